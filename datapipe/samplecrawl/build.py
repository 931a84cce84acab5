"""Writing the sample crawl: per-record-gzip WARC files (warcio), the manifest, the
details file and the reference corpus; ``main`` is ``python -m datapipe.samplecrawl``.

WARC-Date and WARC-Record-ID derive from the seed and gzip members carry no mtime,
so the same arguments give the same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from .lang import LANGS, TOPICS
from .pages import BASE_DATE, Page
from .plan import plan_pages

MANIFEST_NAME = "sample_crawl_manifest.json"
DETAILS_NAME = "sample_crawl_details.json"
REFERENCE_DIR = "reference_corpus"
REFERENCE_SENTENCES = 3000


def _record_id(seed: int, *parts: object) -> str:
    h = hashlib.sha1(("datapipe-samplecrawl\x1f" + "\x1f".join(map(str, (seed,) + parts))).encode()).digest()
    return f"<urn:uuid:{uuid.UUID(bytes=h[:16], version=4)}>"


def _warc_date(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_date(dt: datetime) -> str:
    return dt.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _write_file(path: Path, pages: list[Page], *, seed: int, file_index: int, clock: datetime,
                pages_by_url: dict[str, Page], record_ids: dict[str, str]) -> datetime:
    from warcio.recordloader import ArcWarcRecord
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True, warc_version="1.0")
        info_id = _record_id(seed, "warcinfo", file_index)
        info = (f"software: datapipe.samplecrawl/1\r\nisPartOf: DATAPIPE-SAMPLE-CRAWL-S{seed}\r\n"
                f"operator: datapipe (synthetic crawl, built offline)\r\n"
                f"description: Deterministic sample crawl for tests and demos; seed {seed}\r\n"
                f"robots: classic\r\nformat: WARC File Format 1.0\r\n").encode()
        w.write_record(w.create_warc_record(
            "", "warcinfo", payload=io.BytesIO(info), length=len(info), warc_content_type="application/warc-fields",
            warc_headers_dict={"WARC-Date": _warc_date(clock), "WARC-Record-ID": info_id, "WARC-Filename": path.name}))
        rng = random.Random(f"datapipe-samplecrawl:{seed}:file:{file_index}")
        for p in pages:
            clock += timedelta(seconds=rng.randint(1, 30))
            date = _warc_date(clock)
            resp_id = record_ids[p.url]
            host = p.url.split("/")[2]
            path_q = "/" + p.url.split("/", 3)[3]
            common = {"WARC-Date": date, "WARC-Warcinfo-ID": info_id, "WARC-IP-Address": f"192.0.2.{rng.randint(1, 254)}"}
            req_http = StatusAndHeaders(f"GET {path_q} HTTP/1.1", [
                ("Host", host), ("User-Agent", "datapipe-samplecrawl/1.0 (synthetic; no network)"),
                ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("Accept-Language", "en-US,en;q=0.5"), ("Accept-Encoding", "br,gzip"), ("Connection", "Keep-Alive"),
            ], protocol="", is_http_request=True)
            w.write_record(w.create_warc_record(
                p.url, "request", http_headers=req_http,
                warc_headers_dict={**common, "WARC-Record-ID": _record_id(seed, "request", p.url),
                                   "WARC-Concurrent-To": resp_id}))
            if p.kind == "revisit":
                orig = pages_by_url[p.dup_of]
                http = StatusAndHeaders("200 OK", [("Date", _http_date(clock)), ("Server", "nginx"),
                                                   ("Content-Type", orig.content_type),
                                                   ("Content-Length", str(len(orig.body)))], protocol="HTTP/1.1")
                digest = "sha1:" + _b32_sha1(orig.body)
                rec = w.create_revisit_record(
                    p.url, digest, p.dup_of, _warc_date(BASE_DATE - timedelta(days=30)), http_headers=http,
                    warc_headers_dict={**common, "WARC-Record-ID": resp_id, "WARC-Refers-To": record_ids[p.dup_of]})
                w.write_record(rec)
                continue
            if p.kind == "malformed_http":
                hd = StatusAndHeaders("", [("WARC-Type", "response"), ("WARC-Date", date), ("WARC-Record-ID", resp_id),
                                           ("WARC-Warcinfo-ID", info_id), ("WARC-Target-URI", p.url),
                                           ("Content-Type", "application/http; msgtype=response")], protocol="WARC/1.0")
                rec = ArcWarcRecord("warc", "response", hd, io.BytesIO(p.body), None,
                                    "application/http; msgtype=response", len(p.body))
                rec.payload_length = len(p.body)
                w.write_record(rec)
                continue
            http = StatusAndHeaders("200 OK", [
                ("Date", _http_date(clock)), ("Server", rng.choice(["nginx", "Apache", "cloudflare"])),
                ("Content-Type", p.content_type), ("Content-Length", str(len(p.body))),
                ("Cache-Control", "max-age=600"), ("Connection", "close"),
            ], protocol="HTTP/1.1")
            mime = p.content_type.split(";")[0]
            w.write_record(w.create_warc_record(
                p.url, "response", payload=io.BytesIO(p.body), length=len(p.body), http_headers=http,
                warc_headers_dict={**common, "WARC-Record-ID": resp_id, "WARC-Identified-Payload-Type": mime}))
            meta = f"fetchTimeMs: {rng.randint(40, 900)}\r\n"
            if p.charset:
                meta += f"charset-detected: {p.charset.upper()}\r\n"
            if p.lang:
                meta += f'languages-cld2: {{"reliable":true,"languages":[{{"code":"{p.lang}","text-covered":0.98}}]}}\r\n'
            meta_b = meta.encode()
            w.write_record(w.create_warc_record(
                p.url, "metadata", payload=io.BytesIO(meta_b), length=len(meta_b),
                warc_content_type="application/warc-fields",
                warc_headers_dict={"WARC-Date": date, "WARC-Warcinfo-ID": info_id,
                                   "WARC-Record-ID": _record_id(seed, "metadata", p.url), "WARC-Concurrent-To": resp_id}))
    return clock


def _b32_sha1(data: bytes) -> str:
    import base64
    return base64.b32encode(hashlib.sha1(data).digest()).decode()


def _reference_corpus(seed: int, page_sentences: dict[str, set[str]], n: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for code, L in LANGS.items():
        rng = random.Random(f"datapipe-samplecrawl:{seed}:reference:{code}")
        taken = page_sentences.get(code, set())
        seen: set[str] = set()
        sents: list[str] = []
        tries = 0
        while len(sents) < n and tries < n * 50:
            tries += 1
            s = L.sentence(rng, rng.choice(TOPICS))
            if s in taken or s in seen:
                continue
            seen.add(s)
            sents.append(s)
        out[code] = sents
    return out


def build_sample_crawl(out_dir: str | Path, *, n_pages: int = 400, n_files: int = 4, seed: int = 0,
                       reference_sentences: int = REFERENCE_SENTENCES) -> list[Path]:
    """Write the sample crawl into ``out_dir``; return the WARC paths (sorted).

    Also writes the manifest (``url -> kind``), the details file and the reference
    corpus. Same arguments, same bytes."""
    if n_files < 1:
        raise ValueError(f"n_files must be >= 1, got {n_files}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = plan_pages(n_pages, seed)
    by_url = {p.url: p for p in pages}
    record_ids = {p.url: _record_id(seed, "response", p.url) for p in pages}
    per_file = -(-len(pages) // n_files)
    paths: list[Path] = []
    details: dict[str, dict] = {}
    clock = BASE_DATE + timedelta(seconds=random.Random(f"datapipe-samplecrawl:{seed}:clock").randint(0, 86_399))
    for i in range(n_files):
        chunk = pages[i * per_file:(i + 1) * per_file]
        path = out / f"sample-s{seed}-{i:05d}.warc.gz"
        clock = _write_file(path, chunk, seed=seed, file_index=i, clock=clock, pages_by_url=by_url, record_ids=record_ids)
        paths.append(path)
        for p in chunk:
            d = {"kind": p.kind, "lang": p.lang, "file": path.name, "record_id": record_ids[p.url],
                 "content_type": p.content_type}
            if p.charset and p.charset != "utf-8":
                d["charset"] = p.charset
            if p.dup_of:
                d["dup_of"] = p.dup_of
            details[p.url] = d
    manifest = {url: d["kind"] for url, d in sorted(details.items())}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / DETAILS_NAME).write_text(json.dumps({"seed": seed, "n_pages": n_pages, "files": [p.name for p in paths],
                                                "pages": details}, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    page_sents: dict[str, set[str]] = {}
    for p in pages:
        if p.lang:
            page_sents.setdefault(p.lang, set()).update(p.sentences)
    ref = out / REFERENCE_DIR
    ref.mkdir(exist_ok=True)
    for code, sents in _reference_corpus(seed, page_sents, reference_sentences).items():
        (ref / f"{code}.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datapipe.samplecrawl",
                                 description="Build the deterministic sample crawl (no network).")
    ap.add_argument("out_dir")
    ap.add_argument("--n-pages", type=int, default=400)
    ap.add_argument("--n-files", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        paths = build_sample_crawl(args.out_dir, n_pages=args.n_pages, n_files=args.n_files, seed=args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifest = json.loads((Path(args.out_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    kinds: dict[str, int] = {}
    for k in manifest.values():
        kinds[k] = kinds.get(k, 0) + 1
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} WARC files ({size / 1e6:.1f} MB, {len(manifest)} captures) to {args.out_dir}")
    print("kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a run directory on an object store costs against local disk (``--run-dir s3://...``).

    .venv/bin/python bench/rundir_s3.py [--config configs/default.yaml] [--input FILES...] [--work DIR]

Starts moto's S3 server on loopback in this process (the test extra's ``moto[server]``), then
runs the same config over the same input through the CLI: to a local run directory, to
``s3://bench/run`` (workers write waves to the store, the driver copies and commits), and again to
the same URL with everything done (a resume's fixed cost: the staging copy pulled from the store,
the pre-flight probe). Prints wall seconds of each, the bytes the bucket holds, and whether the
outputs are the same documents. Loopback S3 has no network latency: on a real store the
per-request costs (markers, stats files: a few small objects per shard) weigh more.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _docs_local(root: Path) -> list[str]:
    import pyarrow.parquet as pq
    return sorted(i for f in sorted((root / "output").rglob("*.parquet")) for i in pq.read_table(f, columns=["id"])["id"].to_pylist())


def _docs_s3(fs, prefix: str) -> list[str]:
    import pyarrow.parquet as pq
    out = []
    for f in sorted(p for p in fs.find(f"{prefix}/output") if p.endswith(".parquet")):
        with fs.open(f, "rb") as fh:
            out += pq.read_table(fh, columns=["id"])["id"].to_pylist()
    return sorted(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    ap.add_argument("--input", nargs="+", help="default: the sample crawl (built once under runs/_sample_crawl)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder, removed)")
    args = ap.parse_args(argv)
    from _measure import datapipe_cli, datapipe_env
    import logging
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    import s3fs
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the server's line per request

    inputs = args.input
    if not inputs:
        from datapipe.cli import default_sample_crawl
        inputs = default_sample_crawl(REPO / "runs" / "_sample_crawl")
    work = Path(args.work or tempfile.mkdtemp(prefix="datapipe-rundir-s3-"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    creds = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
             "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "eu-west-1"}
    fs = s3fs.S3FileSystem(endpoint_url=creds["AWS_ENDPOINT_URL"], key="bench", secret="bench",
                           client_kwargs={"region_name": "eu-west-1"})
    fs.mkdir("bench")
    env = datapipe_env(DATAPIPE_STAGING_DIR=str(work / "staging"), **creds)

    def run(run_dir: str, label: str) -> float:
        t0 = time.time()
        r = subprocess.run([*datapipe_cli(), "run", args.config, "--input", *inputs, "--run-dir", run_dir,
                            "--quiet", "--no-mix"], env=env, cwd=REPO, capture_output=True, text=True)
        wall = time.time() - t0
        if r.returncode != 0:
            sys.exit(f"{label}: exit {r.returncode}\n{r.stderr[-3000:]}")
        return wall

    try:
        local = run(str(work / "local"), "local")
        local_again = run(str(work / "local"), "local resume")
        remote = run("s3://bench/run", "s3")
        again = run("s3://bench/run", "s3 resume")
        held = sum(fs.du("bench/run", total=False).values())
        objects = len(fs.find("bench/run"))
        same = _docs_local(work / "local") == _docs_s3(fs, "bench/run")
        print(f"input: {len(inputs)} file(s); config {Path(args.config).name}")
        print(f"run dir local disk      : {local:7.1f} s")
        print(f"run dir s3:// (loopback): {remote:7.1f} s  ({remote / local:.2f}x local; {objects} objects, "
              f"{held / 2**20:.1f} MiB in the bucket)")
        print(f"resume, all done (local): {local_again:7.1f} s")
        print(f"resume, all done (s3)   : {again:7.1f} s  (+ pull of the staging copy and the store's probes)")
        print(f"same output documents   : {same}")
    finally:
        server.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

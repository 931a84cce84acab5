"""s3:// inputs, end to end, against a real S3 server (moto's, on loopback): globs, a paths
listing, storage options reaching the Ray read tasks, and clear errors."""
from __future__ import annotations

import gzip
import os

import pyarrow.parquet as pq
import pytest

from datapipe.config import ConfigError, parse_config
from datapipe.io import InputError
from datapipe.runner import load_stats, run_pipeline
from tests._s3 import s3_server  # noqa: F401 - the session's S3 server (a fixture)

BUCKET = "crawl-bucket"


@pytest.fixture(scope="module")
def s3(sample_crawl, s3_server):  # noqa: F811
    """The sample crawl under s3://crawl-bucket/cc/ on the test S3 server, and its options."""
    # given to fsspec through input.storage_options only: the Ray workers, started before this
    # fixture, do not see environment variables set here
    opts = s3_server.opts
    fs = s3_server.fs()
    s3_server.bucket(BUCKET)
    for f in sample_crawl:
        fs.put(f, f"{BUCKET}/cc/{os.path.basename(f)}")
    listing = gzip.compress("".join(f"cc/{os.path.basename(f)}\n" for f in sample_crawl).encode())
    with fs.open(f"{BUCKET}/warc.paths.gz", "wb") as fh:
        fh.write(listing)
    return opts


def _config(opts=None):
    cfg = {"name": "s3", "stages": [{"extract": {}}, {"length": {"min_chars": 200}}],
           "engine": {"batch_size": 16}}
    if opts is not None:
        cfg["input"] = {"storage_options": {"s3": opts}, "base_url": f"s3://{BUCKET}/"}
    return parse_config(cfg, file="<test>")


def _output(run_dir):
    rows = []
    for f in sorted((run_dir / "output").rglob("*.parquet")):
        rows += pq.read_table(f, columns=["id", "text", "url"]).to_pylist()
    return sorted(rows, key=lambda r: r["id"])


def test_s3_glob_and_listing_give_the_local_output(ray_session, sample_crawl, s3, tmp_path):
    local = run_pipeline(_config(), inputs=sample_crawl, run_dir=tmp_path / "local", quiet=True)
    by_glob = run_pipeline(_config(s3), inputs=[f"s3://{BUCKET}/cc/*.warc.gz"], run_dir=tmp_path / "glob",
                           quiet=True)
    by_list = run_pipeline(_config(s3), inputs=[f"s3://{BUCKET}/warc.paths.gz"], run_dir=tmp_path / "list",
                           quiet=True)
    want = _output(local.run_dir)
    assert len(want) > 20
    assert _output(by_glob.run_dir) == want
    assert _output(by_list.run_dir) == want
    reads = {s.stage: s for s in load_stats(by_glob.run_dir)}["read"]
    assert reads.rows_out == {s.stage: s for s in load_stats(local.run_dir)}["read"].rows_out
    assert reads.shards == len(sample_crawl)
    # the run directory keeps the options without the secrets
    saved = (by_glob.run_dir / "config.yaml").read_text()
    assert s3["endpoint_url"] in saved and "testing" not in saved


def test_s3_errors_are_clear(ray_session, s3, tmp_path):
    with pytest.raises(InputError, match="no input files|matches nothing"):
        run_pipeline(_config(s3), inputs=[f"s3://{BUCKET}/nothing-here/*.warc.gz"], run_dir=tmp_path / "a",
                     quiet=True)
    # a missing object is a counted, logged skip of that file, not a lost run
    res = run_pipeline(_config(s3), inputs=[f"s3://{BUCKET}/cc/missing.warc.gz"], run_dir=tmp_path / "b",
                       quiet=True)
    read = {s.stage: s for s in load_stats(res.run_dir)}["read"]
    assert read.rows_out == 0 and read.counters.get("unreadable_file") == 1
    with pytest.raises(ConfigError, match="storage_options"):
        parse_config({"input": {"storage_options": {"S3 bucket": {"anon": True}}}}, file="<test>")

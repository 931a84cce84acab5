"""A real S3 server for the object-store tests: moto's, in server mode, on loopback.

``s3_server`` (session fixture) starts it once; tests get its endpoint as fsspec storage
options (``opts``, for ``input.storage_options`` and ``s3fs.S3FileSystem(**opts)``) and as the
usual environment variables (``env``: ``AWS_ENDPOINT_URL``, keys, region) for subprocesses
and the Ray workers they start. moto is pinned in the test extra: absent, the tests that
import this module skip, or fail under ``DATAPIPE_STRICT_TESTS=1``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from tests.conftest import require

moto_server = require("moto.moto_server.threaded_moto_server", "the test extra: pip install -e '.[test]'")
s3fs = require("s3fs")


@dataclass
class S3Server:
    endpoint: str
    opts: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

    def fs(self):
        return s3fs.S3FileSystem(**self.opts, skip_instance_cache=True)

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (once) and return it."""
        fs = self.fs()
        if not fs.exists(name):
            fs.mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    opts = {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "eu-west-1"}}
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "eu-west-1"}
    yield S3Server(endpoint, opts, env)
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The server's credentials as environment variables of this process (as a user sets them),
    with fsspec's cached S3 filesystems dropped so new ones read them."""
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    s3fs.S3FileSystem.clear_instance_cache()
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()


__all__ = ["S3Server", "s3_server", "s3_env", "s3fs"]

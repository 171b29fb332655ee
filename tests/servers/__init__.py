"""Real servers for the scaling tests (SeaweedFS's S3, PostgreSQL, a Dask cluster), each on
127.0.0.1 only, on free ports, so two pytest-xdist workers can each run their own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Console scripts of the virtualenv (weed, dask) land beside its python.
SCRIPTS = Path(sysconfig.get_path("scripts"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """CI must have every tool (make test installs them), so there a missing one fails; a developer
    without it gets a skip saying what to install."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def free_ports(count: int) -> list[int]:
    """Distinct free ports of 127.0.0.1, held open together so none is handed out twice."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(ready: Callable[[], object], *, seconds: float, what: str,
             process: subprocess.Popen[bytes] | None = None,
             log: Path | None = None) -> object:
    """Poll ``ready`` until it returns something truthy; fail naming ``what`` and the log's tail
    if it does not within ``seconds`` or the process exits first."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode} while starting:\n"
                        f"{tail(log)}")
        try:
            result = ready()
        except Exception as error:
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(0.2)
    pytest.fail(f"{what} not ready within {seconds:.0f} s (last: {last!r}):\n{tail(log)}")


def tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop_group(process: subprocess.Popen[bytes], *, seconds: float = 15.0) -> None:
    """SIGTERM to the process's own group (started with start_new_session), SIGKILL after
    ``seconds``: a server's helpers must not outlive the test."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=seconds)
    with contextlib.suppress(ProcessLookupError):  # leftovers of the group, even if it exited
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@contextlib.contextmanager
def watchdog(command: list[str]) -> Iterator[None]:
    """Runs ``command`` if this process dies inside the block (a shell waits on a pipe only this
    process holds), so a test process killed before its teardown leaves no server behind; a
    normal exit disarms it."""
    guard = subprocess.Popen(["sh", "-c", 'cat > /dev/null; "$@" > /dev/null 2>&1', "sh",
                              *command], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(guard.pid, signal.SIGKILL)
        guard.wait(timeout=10)
        if guard.stdin is not None:
            guard.stdin.close()


@contextlib.contextmanager
def started(args: list[str], *, log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL)
    kill = ("import os, signal, time\n"
            f"for sig in (signal.SIGTERM, signal.SIGKILL):\n"
            f"    try: os.killpg({process.pid}, sig)\n"
            "    except ProcessLookupError: break\n"
            "    time.sleep(5)\n")
    try:
        with watchdog([sys.executable, "-c", kill]):
            yield process
    finally:
        stop_group(process)

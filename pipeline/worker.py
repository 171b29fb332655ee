"""A child process for the engine's heavy work, so that no process holds both an orchestrator and
an engine at work.

A Dagster run's process holds Dagster, the code location and the analysts' dbt integration
(about 340 MB before any step runs); normalizing or loading an hour adds DuckDB's working memory
(about 300 MB at a million events). In one process that is over 600 MB; split, the run's process
stays where it starts and the worker, which imports only the core, peaks where the core does
(``docs/performance.md``). A step starts one worker and hands it each hour in turn, so the
start-up (about 0.3 s) is paid once a step, not once an hour.

The two processes are the same code on one machine, so calls and results travel as pickles on
the worker's own pipes: ``call`` names a module-level function of ``pipeline`` and passes its
arguments; its result, or the exception it raised, comes back as it was. The worker dies with
its parent (``PR_SET_PDEATHSIG`` on Linux, and an end of input anywhere), so a run killed at any
stage leaves no worker behind to hold a lock; a worker that dies (the kernel's OOM killer, say)
is a ``WorkerDied`` naming how it ended, and the next call starts another.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import IO, Any

_LENGTH = struct.Struct("!Q")


class WorkerDied(RuntimeError):
    """The worker process ended in the middle of a call."""


def _send(stream: IO[bytes], value: object) -> None:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(body)) + body)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


class Worker:
    """One child process serving calls one at a time, started by the first; use it as a
    context manager, which ends it.

    A step whose work is small (``work_bytes`` under ``in_process_below_bytes``: the zipped
    members of its range) runs its calls in its own process instead: its DuckDB stays far below
    its memory limit, and a child's start (process, imports, opening the warehouse again) would
    be most of the step. ``at_exit`` calls then run here when the block ends."""

    # How the worker starts: the core's loop (``serve``); a test may start it its own way.
    command: tuple[str, ...] = (sys.executable, "-m", "pipeline.worker")
    # 32 MB of zipped JSON is about 120,000 events: DuckDB's working memory for it is tens of MB.
    in_process_below_bytes: int = 32 << 20

    def __init__(self, *, work_bytes: int | None = None) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self.in_process = work_bytes is not None and work_bytes < self.in_process_below_bytes
        self._at_exit: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def __enter__(self) -> Worker:
        return self

    def at_exit(self, function: Callable[..., Any], *args: Any) -> None:
        """Call ``function(*args)`` when the block ends, where the calls ran: a worker process
        ends with its block and takes what it held along; the step's own process does not."""
        if self.in_process:
            self._at_exit.append((function, args))

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            self._process = subprocess.Popen(list(self.command), stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE)
        return self._process

    def __exit__(self, *exc: object) -> None:
        while self._at_exit:
            function, args = self._at_exit.pop()
            function(*args)
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        with contextlib.suppress(BrokenPipeError):  # it may have ended already
            process.stdin.close()  # the worker's loop ends at the end of its input
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in the worker: its result, or its exception raised."""
        if self.in_process:
            return function(*args, **kwargs)
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        try:
            _send(process.stdin, (function.__module__, function.__qualname__, args, kwargs))
            ok, value = _receive(process.stdout)
        except (EOFError, BrokenPipeError) as error:
            self._process = None  # the next call starts another
            try:
                code = process.wait(timeout=60)  # its output has ended: it is on its way out
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            how = (f"was killed by signal {-code}" if code < 0 else f"exited with {code}")
            raise WorkerDied(f"the worker process {how} during {function.__qualname__}"
                             + (" (out of memory?)" if code == -signal.SIGKILL else "")
                             ) from error
        if ok:
            return value
        raise value


def _die_with_parent() -> None:
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was gone before the call took effect
        os._exit(1)


def serve() -> None:
    """The worker's loop: frames in on stdin, results out on the original stdout; anything the
    called code prints goes to stderr, never into a frame."""
    _die_with_parent()
    frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    frames_in = sys.stdin.buffer
    while True:
        try:
            module, name, args, kwargs = _receive(frames_in)
        except EOFError:
            return
        try:
            target: Any = importlib.import_module(module)
            for part in name.split("."):
                target = getattr(target, part)
            reply: tuple[bool, object] = (True, target(*args, **kwargs))
        except Exception as error:  # every error goes back to the caller
            reply = (False, error)
        try:
            _send(frames_out, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            _send(frames_out, (False, RuntimeError(f"{reply[1]!r} (not picklable: {error})")))


if __name__ == "__main__":
    serve()

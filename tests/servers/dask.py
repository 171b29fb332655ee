"""A Dask scheduler and named workers on 127.0.0.1, as separate processes, as in production.

Workers import the project's code (cwd and PYTHONPATH are the repo) and get the environment the
test passes: Dagster steps read their settings, keys and instance from it on the worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, SCRIPTS, free_ports, started, unavailable, wait_for

READY_SECONDS = 60.0


def dask_cli() -> Path:
    found = SCRIPTS / "dask"
    if found.exists():
        return found
    unavailable(f"no `dask` CLI in {SCRIPTS}: install the project (distributed is a dependency)")


@dataclass(frozen=True)
class DaskCluster:
    address: str  # tcp://127.0.0.1:PORT, what DASK_SCHEDULER_ADDRESS takes
    workers: tuple[str, ...]
    log_dir: Path
    pids: tuple[int, ...]  # the scheduler's and each worker's (nanny) process

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout=30)

    def worker_pids(self) -> dict[str, int]:
        """Worker name -> the PID of the process that runs its tasks (not its nanny's)."""
        with self.client() as client:
            pids = client.run(os.getpid)
            names = {addr: info["name"] for addr, info in
                     client.scheduler_info(n_workers=-1)["workers"].items()}
        return {str(names[addr]): int(pid) for addr, pid in pids.items()}

    def __str__(self) -> str:
        return self.address


@contextlib.contextmanager
def dask_cluster_processes(env: Mapping[str, str] | None = None,
                           workers: Sequence[str] = ("w1", "w2")) -> Iterator[DaskCluster]:
    cli = dask_cli()
    root = Path(tempfile.mkdtemp(prefix="dask-"))
    full_env = {**os.environ, **(env or {}),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                            (env or {}).get("PYTHONPATH")])),
                "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
                "DASK_TEMPORARY_DIRECTORY": str(root)}
    try:
        (port,) = free_ports(1)
        address = f"tcp://127.0.0.1:{port}"
        full_env["DASK_SCHEDULER_ADDRESS"] = address  # a step rebuilding its job picks the executor
        # Without --dashboard-address their HTTP routes (health, metrics) listen on every
        # address, the scheduler's on a fixed port, even with --no-dashboard.
        with contextlib.ExitStack() as stack:
            scheduler = stack.enter_context(started(
                [str(cli), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--no-dashboard", "--dashboard-address", "127.0.0.1:0"],
                log=root / "scheduler.log", env=full_env, cwd=ROOT))
            processes = [scheduler]
            for name in workers:
                processes.append(stack.enter_context(started(
                    [str(cli), "worker", address, "--nthreads", "1", "--nworkers", "1",
                     "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                     "--name", name,
                     "--local-directory", str(root / name), "--death-timeout", "60"],
                    log=root / f"{name}.log", env=full_env, cwd=ROOT)))
            cluster = DaskCluster(address, tuple(workers), root, tuple(p.pid for p in processes))

            def all_workers() -> bool:
                with cluster.client() as client:
                    client.wait_for_workers(len(workers), timeout=5)
                return True

            wait_for(all_workers, seconds=READY_SECONDS, what="dask scheduler and workers",
                     process=scheduler, log=root / "scheduler.log")
            yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dask_cluster() -> Iterator[Callable[..., DaskCluster]]:
    """``dask_cluster(env=..., workers=("w1", "w2"))`` starts a cluster whose workers see
    ``env``; every cluster started is stopped after the test."""
    with contextlib.ExitStack() as stack:
        def start(env: Mapping[str, str] | None = None,
                  workers: Sequence[str] = ("w1", "w2")) -> DaskCluster:
            return stack.enter_context(dask_cluster_processes(env, workers))
        yield start

"""The steps' worker process (pipeline/worker.py): calls and their errors cross it unchanged,
what the called code prints never corrupts a reply, a worker that dies is named, and a worker
never outlives the process that started it."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.partition_swap import RowDropRefused
from pipeline.worker import Worker, WorkerDied

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_results_and_errors_cross_unchanged_and_prints_stay_out_of_the_replies():
    with Worker() as worker:
        child = worker.call(os.getpid)
        assert child != os.getpid()
        assert worker.call(print, "a line the called code prints") is None
        assert worker.call(sorted, [3, 1, 2], reverse=True) == [3, 2, 1]
        with pytest.raises(ValueError, match="invalid literal"):
            worker.call(int, "not a number")
        assert worker.call(os.getpid) == child  # one process for every call
    assert not alive(child)  # the block ended it


def test_a_refusal_keeps_its_figures_across_the_pipe():
    refused = pickle.loads(pickle.dumps(RowDropRefused("fewer rows", loaded=10, fetched=1)))
    assert (str(refused), refused.loaded, refused.fetched) == ("fewer rows", 10, 1)


def test_a_worker_that_dies_mid_call_is_named():
    with Worker() as worker:
        child = worker.call(os.getpid)
        with pytest.raises(WorkerDied, match=r"killed by signal 9 during kill \(out of memory"):
            worker.call(os.kill, child, signal.SIGKILL)
    with Worker() as worker, pytest.raises(WorkerDied, match="exited with 3 during _exit"):
        worker.call(os._exit, 3)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_worker_dies_with_the_process_that_started_it():
    parent = subprocess.Popen(
        [sys.executable, "-c", "import os, time\nfrom pipeline.worker import Worker\n"
         "with Worker() as worker:\n    print(worker.call(os.getpid), flush=True)\n"
         "    time.sleep(600)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait(timeout=60)
    deadline = time.monotonic() + 60
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_small_work_runs_here_and_lets_go_of_the_warehouse_when_the_block_ends(tmp_path):
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse, hold, release

    warehouse = Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_seconds=0.5,
                          projects=[Project.named("amplitude", "default")])
    other = [sys.executable, "-c", "import sys, duckdb\n"
             f"duckdb.connect({str(tmp_path / 'warehouse.duckdb')!r}).close()"]
    small = Worker.in_process_below_bytes - 1
    with Worker(work_bytes=small) as worker:
        assert worker.call(os.getpid) == os.getpid()  # no process started for it
        worker.call(hold, warehouse)
        worker.at_exit(release, warehouse)
        assert subprocess.run(other, cwd=ROOT, capture_output=True).returncode != 0  # locked
    assert subprocess.run(other, cwd=ROOT, capture_output=True).returncode == 0
    with Worker(work_bytes=Worker.in_process_below_bytes) as worker:  # past it: a worker
        assert worker.call(os.getpid) != os.getpid()

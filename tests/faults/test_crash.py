"""Crash safety: a run SIGKILLed at any stage costs nothing but a re-run (issue 10, item 2).

``dagster asset materialize`` runs as a subprocess against the simulator, is killed (its whole
process group, with SIGKILL) while it downloads, lands, writes Parquet or loads DuckDB, and the
same range is run again with the same DAGSTER_HOME. The re-run must not wait on anything the dead
run held, and must leave exactly the simulator's rows, no run STARTED, no pool slot held and no
temporary file in the lake.

Small hours pass through each stage in milliseconds, so the stages that Python can see are held
open instead (``paused_cli``): the child stops itself just before it renames its Parquet staging
file or its landing staging folder, or just before it commits an hour's load transaction, and the
test kills it there, from outside, as an OOM killer or an operator would. The download is held
open by the simulator (``Fault.slow``) and killed while its request is in flight.
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.test_utils import create_run_for_test

from assets.executor import (
    TAG_STARTED,
    Liveness,
    PoolWaitTimeout,
    ProcessIdentity,
    _free,
    _PoolWait,
    pool_wait_seconds,
    reap_dead_runs,
)
from simulator import Fault
from tests.conftest import DAY
from tests.e2e.conftest import Project, warehouse_uuids
from tests.e2e.test_cli import ROOT, cli_env, expected, loaded, run
from tests.faults.conftest import assert_cli_hours_match_served

__all__ = ["cli_env"]  # the fixture, shared with tests/e2e/test_cli.py

HOURS = [0, 1, 2]
SPAN = "2026-03-01-00:00...2026-03-01-02:00"
MATERIALIZE = ["dagster", "asset", "materialize", "-m", "assets.definitions",
               "--select", "*amplitude/events", "--partition-range", SPAN]
EXPORT_POOL, WAREHOUSE_POOL = "amplitude_export", "duckdb_warehouse"
HANG_BOUND_SECONDS = 120  # the re-run may take this much longer than a clean run, no more
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
               dg.DagsterRunStatus.CANCELING]


# ---- the child: the Dagster CLI, stopping itself at a stage ------------------------------------

def _pause() -> None:
    Path(os.environ["CRASH_MARKER"]).write_text(str(os.getpid()))
    time.sleep(3600)  # until the test kills the process group


class _PauseBeforeCommit:
    """A warehouse connection that stops before its ``nth`` COMMIT, inside the transaction."""

    commits = 0

    def __init__(self, con: duckdb.DuckDBPyConnection, nth: int) -> None:
        self._con, self._nth = con, nth

    def execute(self, query: object, *args: object, **kwargs: object) -> object:
        if isinstance(query, str) and query.strip().upper() == "COMMIT":
            _PauseBeforeCommit.commits += 1
            if _PauseBeforeCommit.commits == self._nth:
                _pause()
        return self._con.execute(query, *args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


def paused_cli(argv: list[str]) -> None:
    """Run ``argv`` (a Dagster CLI command) in this process, stopping at ``$CRASH_PAUSE_AT``:

    - ``parquet``: before the first ``.events.parquet.*.tmp`` is renamed over its hour's file;
    - ``landing``: before the first ``.staging-*`` landing folder is renamed to its version;
    - ``load``: inside the second hour's load transaction, after its rows are in (the first hour
      is committed).

    The steps' worker processes (``pipeline/worker.py``) stop at the same stage.
    """
    from pipeline.worker import Worker

    _pause_at(os.environ["CRASH_PAUSE_AT"])
    Worker.command = (sys.executable, "-c",
                      "from tests.faults.test_crash import paused_worker; paused_worker()")
    Worker.in_process_below_bytes = 0  # these hours are small: a worker all the same
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


def paused_worker() -> None:
    from pipeline.worker import serve

    _pause_at(os.environ["CRASH_PAUSE_AT"])
    serve()


def _pause_at(stage: str) -> None:
    prefix = {"parquet": ".events.parquet.", "landing": ".staging-"}.get(stage)
    if prefix is not None:
        def hook(event: str, args: tuple[object, ...]) -> None:
            if event == "os.rename":  # os.rename and os.replace
                name = Path(os.fsdecode(args[0])).name  # type: ignore[arg-type]
                if name.startswith(prefix):
                    _pause()

        sys.addaudithook(hook)
    elif stage == "load":
        from contextlib import contextmanager

        from pipeline.warehouse import Warehouse

        connect = Warehouse.connect

        @contextmanager
        def paused_connect(self: Warehouse) -> Iterator[object]:
            with connect(self) as con:
                yield _PauseBeforeCommit(con, nth=2)

        Warehouse.connect = paused_connect  # type: ignore[method-assign]


# ---- helpers -----------------------------------------------------------------------------------

def start(env: dict[str, str], log: Path, stage: str = "none") -> subprocess.Popen[bytes]:
    """Start materializing SPAN in its own process group, pausing at ``stage`` (see paused_cli);
    its marker file appears beside ``log`` once it has paused."""
    child = f"from tests.faults.test_crash import paused_cli; paused_cli({MATERIALIZE!r})"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", child], cwd=ROOT, start_new_session=True, stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "CRASH_PAUSE_AT": stage, "CRASH_MARKER": str(log.with_suffix(".paused"))})


def wait_for(what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path,
             timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {what}:\n"
                        + log.read_text()[-3000:])
        if time.monotonic() > deadline:
            kill(process)
            pytest.fail(f"no {what} within {timeout} s:\n" + log.read_text()[-3000:])
        time.sleep(0.02)


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def temporaries(lake: Path) -> list[str]:
    """Every file or folder of the lake that is not data: staging, scratch, spill, .part."""
    found = []
    for path in sorted(lake.rglob("*")):
        parts = path.relative_to(lake).parts
        if (parts[0] == ".scratch" and len(parts) == 2) or (
                parts[0] != ".scratch" and path.name.startswith(".")):
            found.append(str(path.relative_to(lake)))
    return found


def instance_at(env: dict[str, str]) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def held_slots(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    storage = instance.event_log_storage
    held = {}
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        slots = [f"{s.run_id}:{s.step_key}" for s in info.claimed_slots]
        slots += [f"{p.run_id}:{p.step_key} (queued)" for p in info.pending_steps
                  if p.assigned_timestamp is None]
        if slots:
            held[pool] = slots
    return held


_CLEAN: dict[str, float] = {}


def clean_run_seconds(env: dict[str, str], tmp_path: Path, sim) -> float:
    """How long a clean run of SPAN takes here (once per test process), in its own instance,
    lake and warehouse against the same simulator."""
    if "seconds" not in _CLEAN:
        home = tmp_path / "clean_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        clean = {**env, "DAGSTER_HOME": str(home), "LAKE_ROOT": str(tmp_path / "clean_lake"),
                 "WAREHOUSE_PATH": str(tmp_path / "clean" / "warehouse.duckdb")}
        started = time.monotonic()
        done = run(MATERIALIZE, clean)
        assert done.returncode == 0, done.stderr[-3000:]
        _CLEAN["seconds"] = time.monotonic() - started
        sim.reset_log()
    return _CLEAN["seconds"]


def rerun_and_check(sim, env: dict[str, str], tmp_path: Path, clean_seconds: float) -> None:
    """Run SPAN again and check everything the issue asks of a re-run after a crash."""
    started = time.monotonic()
    done = run(MATERIALIZE, env, timeout=clean_seconds + HANG_BOUND_SECONDS)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"re-run {seconds:.1f} s, clean run {clean_seconds:.1f} s")
    assert seconds <= clean_seconds + HANG_BOUND_SECONDS
    assert "Reaped a dead run" in done.stderr
    assert loaded(tmp_path) == expected(sim, HOURS)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT uuid) FROM amplitude.events"
                           ).fetchone() == (sum(expected(sim, HOURS).values()),) * 2
        assert con.execute("SELECT count(*) FROM amplitude._loads").fetchone() == (len(HOURS),)
    # The rows themselves: each hour's uuids and fields are what the simulator served, one copy
    # each, in DuckDB and in the hour's Parquet file.
    assert_cli_hours_match_served(sim, tmp_path, HOURS)
    with instance_at(env) as instance:
        records = instance.get_run_records()
        assert sorted(r.dagster_run.status.value for r in records) == ["FAILURE", "SUCCESS"]
        (dead,) = (r.dagster_run for r in records
                   if r.dagster_run.status == dg.DagsterRunStatus.FAILURE)
        (failure,) = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "is gone (killed or crashed" in failure.message
        assert not instance.get_run_records(filters=dg.RunsFilter(statuses=IN_PROGRESS))
        assert held_slots(instance) == {}
    left = temporaries(tmp_path / "lake")
    assert not left, "the dead run's temporaries are still in the lake:\n" + "\n".join(left)


def warehouse_hours(tmp_path: Path) -> dict[str, int]:
    if not (tmp_path / "warehouse.duckdb").exists():
        return {}
    return loaded(tmp_path)


# ---- SIGKILL at each stage, then re-run ---------------------------------------------------------

@pytest.mark.slow
def test_killed_during_the_download(cli_env):
    sim, env, tmp_path = cli_env
    clean = clean_run_seconds(env, tmp_path, sim)
    sim.inject(Fault.slow(60))  # the export request hangs until the run is killed
    log = tmp_path / "killed.log"
    process = start(env, log)
    wait_for("an export request in flight", lambda: any(
        r.end is None for r in sim.export_requests()), process, log)
    with instance_at(env) as instance:  # the observed hang: the dead run keeps this slot
        assert list(held_slots(instance)) == [EXPORT_POOL]
    kill(process)
    assert temporaries(tmp_path / "lake"), "the download left no scratch folder to sweep"
    rerun_and_check(sim, env, tmp_path, clean)


@pytest.mark.slow
def test_killed_while_landing(cli_env):
    sim, env, tmp_path = cli_env
    clean = clean_run_seconds(env, tmp_path, sim)
    log = tmp_path / "killed.log"
    process = start(env, log, "landing")
    wait_for("a paused landing", log.with_suffix(".paused").exists, process, log)
    kill(process)
    left = temporaries(tmp_path / "lake")
    assert any(".staging-" in p for p in left), left
    rerun_and_check(sim, env, tmp_path, clean)


@pytest.mark.slow
def test_killed_while_writing_parquet(cli_env):
    sim, env, tmp_path = cli_env
    clean = clean_run_seconds(env, tmp_path, sim)
    log = tmp_path / "killed.log"
    process = start(env, log, "parquet")
    wait_for("a paused Parquet write", log.with_suffix(".paused").exists, process, log)
    kill(process)
    left = temporaries(tmp_path / "lake")
    assert any(re.search(r"/\.events\.parquet\..*\.tmp$", p) for p in left), left
    assert warehouse_hours(tmp_path) == {}
    rerun_and_check(sim, env, tmp_path, clean)


@pytest.mark.slow
def test_killed_inside_a_load_transaction(cli_env):
    sim, env, tmp_path = cli_env
    clean = clean_run_seconds(env, tmp_path, sim)
    log = tmp_path / "killed.log"
    process = start(env, log, "load")
    wait_for("a paused load", log.with_suffix(".paused").exists, process, log)
    with instance_at(env) as instance:
        assert list(held_slots(instance)) == [WAREHOUSE_POOL]
    kill(process)
    # The first hour was committed whole; the second, whose rows were in but not committed, is
    # not there at all: never half an hour.
    assert warehouse_hours(tmp_path) == expected(sim, HOURS[:1])
    assert_cli_hours_match_served(sim, tmp_path, HOURS[:1])  # the first hour's rows, exactly
    with Project(sim, tmp_path).warehouse() as con:
        assert {h: warehouse_uuids(con, DAY.replace(hour=h)) for h in HOURS[1:]} == {
            h: [] for h in HOURS[1:]}
    rerun_and_check(sim, env, tmp_path, clean)


@pytest.mark.slow
def test_a_step_gives_up_on_a_slot_a_live_run_holds_and_names_it(cli_env):
    sim, env, tmp_path = cli_env
    sim.inject(Fault.slow(60))
    log = tmp_path / "holder.log"
    holder = start(env, log)  # holds amplitude_export while its download hangs
    try:
        wait_for("an export request in flight", lambda: any(
            r.end is None for r in sim.export_requests()), holder, log)
        with instance_at(env) as instance:
            (record,) = instance.get_run_records(filters=dg.RunsFilter(statuses=IN_PROGRESS))
        holder_id = record.dagster_run.run_id
        started = time.monotonic()
        waiter = run([*MATERIALIZE[:-1], "2026-03-01-03:00...2026-03-01-04:00"],
                     {**env, "POOL_WAIT_SECONDS": "2"}, timeout=120)
        waited = time.monotonic() - started
        assert waiter.returncode != 0
        found = re.search(r"gave up waiting for a slot of pool 'amplitude_export' after (\d+) s "
                          r"\(the bound is 2 s\): pool 'amplitude_export' has 1 slot\(s\), "
                          r"held by: run (\S+) \(STARTED, job __ASSET_JOB, process (\d+) on "
                          r"host \S+, alive\), step amplitude__raw_export", waiter.stderr)
        assert found, waiter.stderr[-3000:]
        assert found.group(2) == holder_id and int(found.group(3)) == holder.pid
        assert "python -m assets.executor free RUN_ID" in waiter.stderr
        assert waited < 60, waited  # start-up, the 2 s bound, shut-down
        with instance_at(env) as instance:  # the live holder was left alone, slot and all
            status = {r.dagster_run.run_id: r.dagster_run.status
                      for r in instance.get_run_records()}
            assert status.pop(holder_id) == dg.DagsterRunStatus.STARTED
            assert list(status.values()) == [dg.DagsterRunStatus.FAILURE]
            assert held_slots(instance) == {
                EXPORT_POOL: [f"{holder_id}:amplitude__raw_export"]}
    finally:
        kill(holder)
    # Once it is dead, the command reaps it from a shell (what a run start does anyway).
    reaped = run(["assets.executor", "reap"], env)
    assert reaped.returncode == 0, reaped.stderr
    assert f"run {holder_id} (STARTED) is dead" in reaped.stdout
    assert "1 dead run(s) reaped" in reaped.stdout
    with instance_at(env) as instance:
        assert instance.get_run_by_id(holder_id).status == dg.DagsterRunStatus.FAILURE
        assert held_slots(instance) == {}


# ---- the parts, without subprocesses ------------------------------------------------------------

def test_a_process_is_told_apart_from_a_dead_one_a_reused_pid_and_other_hosts():
    here = ProcessIdentity.current()
    assert here.liveness() is Liveness.ALIVE
    assert ProcessIdentity.from_tags(here.tags()) == here
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert ProcessIdentity(here.host, here.boot_id, here.pid_namespace, child.pid,
                           here.started).liveness() is Liveness.DEAD
    if here.started:  # /proc: the PID of a newer process is not the dead one's
        reused = ProcessIdentity.from_tags({**here.tags(), TAG_STARTED: "1"})
        assert reused is not None and reused.liveness() is Liveness.DEAD
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = ProcessIdentity(here.host, here.boot_id, here.pid_namespace, zombie.pid, "")
        os.kill(zombie.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while identity.liveness() is not Liveness.DEAD and time.monotonic() < deadline:
            time.sleep(0.01)  # killed, not yet waited for: a zombie is dead too
        assert identity.liveness() is Liveness.DEAD
    finally:
        zombie.wait()
    other_host = ProcessIdentity(here.host + "-other", "", "", 1, "")
    assert other_host.liveness() is Liveness.UNKNOWN
    if here.boot_id:
        rebooted = ProcessIdentity(here.host, "0" * 36, here.pid_namespace, here.pid, "")
        assert rebooted.liveness() is Liveness.DEAD


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as it:
        yield it


def _run_holding(instance: dg.DagsterInstance, pool: str, tags: dict[str, str]) -> str:
    run_id = create_run_for_test(instance, status=dg.DagsterRunStatus.STARTED, tags=tags).run_id
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(pool)
    assert storage.claim_concurrency_slot(pool, run_id, "step", 0).is_claimed
    return run_id


def test_only_dead_runs_of_this_host_are_reaped_and_their_slots_freed(instance):
    here = ProcessIdentity.current()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = _run_holding(instance, "a", ProcessIdentity(
        here.host, here.boot_id, here.pid_namespace, gone.pid, "").tags())
    alive = _run_holding(instance, "b", here.tags())
    elsewhere = _run_holding(instance, "c", ProcessIdentity("elsewhere", "", "", 1, "").tags())
    untagged = _run_holding(instance, "d", {})
    (reaped,) = reap_dead_runs(instance, by="me")
    assert (reaped.run_id, reaped.freed) == (dead, ("a: step",))
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    (failure,) = instance.all_logs(dead, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"process {gone.pid} on host {here.host} is gone" in failure.message
    assert "run me marked it failed and freed its pool slots (a: step)" in failure.message
    for run_id in (alive, elsewhere, untagged):
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    storage = instance.event_log_storage
    assert storage.get_concurrency_info("a").claimed_slots == []
    assert [len(storage.get_concurrency_info(p).claimed_slots) for p in "bcd"] == [1, 1, 1]
    assert reap_dead_runs(instance) == []  # nothing twice



def test_free_settles_a_run_known_dead_elsewhere_and_refuses_a_live_one(instance):
    alive = _run_holding(instance, "a", ProcessIdentity.current().tags())
    with pytest.raises(SystemExit, match="is alive: terminate the run instead"):
        _free(instance, alive, force=False)
    assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
    other = _run_holding(instance, "b", {})  # another executor's, or another host's
    assert "freed b: step" in _free(instance, other, force=False)
    assert instance.get_run_by_id(other).status == dg.DagsterRunStatus.FAILURE
    assert instance.event_log_storage.get_concurrency_info("b").claimed_slots == []
    assert "freed a: step" in _free(instance, alive, force=True)

def test_a_blocked_claim_sleeps_between_checks_and_gives_up_naming_the_holder(instance):
    holder = _run_holding(instance, EXPORT_POOL, ProcessIdentity.current().tags())
    waiter = create_run_for_test(instance, status=dg.DagsterRunStatus.STARTED)
    checks, started = 0, time.monotonic()
    with _PoolWait(instance, waiter, wait_seconds=1.0) as pools, pytest.raises(
            PoolWaitTimeout) as raised:
        while True:
            checks += 1
            assert not pools.claim(EXPORT_POOL, "amplitude__raw_export")
            interval = pools.interval_to_next_pending_claim_check()
            assert interval > 0 or time.monotonic() - started >= 1.0  # Dagster's is never > 0
            time.sleep(interval)
    assert 1.0 <= time.monotonic() - started < 3
    assert checks < 10, checks  # slept, did not spin
    message = str(raised.value)
    assert (f"held by: run {holder} (STARTED, job {waiter.job_name}, process {os.getpid()}"
            in message)
    assert ", alive), step step" in message
    # The waiter's own queued claim went with its context; the holder keeps its slot.
    info = instance.event_log_storage.get_concurrency_info(EXPORT_POOL)
    assert [s.run_id for s in info.claimed_slots] == [holder]
    assert {p.run_id for p in info.pending_steps} == {holder}



def test_a_holder_that_dies_while_a_step_waits_is_reaped_and_its_slot_taken(instance):
    here = ProcessIdentity.current()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    held_by = _run_holding(instance, EXPORT_POOL, ProcessIdentity(
        here.host, here.boot_id, here.pid_namespace, holder.pid, "").tags())
    waiter = create_run_for_test(instance, status=dg.DagsterRunStatus.STARTED)
    with _PoolWait(instance, waiter, wait_seconds=30.0) as pools:
        assert not pools.claim(EXPORT_POOL, "amplitude__raw_export")  # alive: it waits
        holder.kill()
        holder.wait()
        pools._pending_timeouts["amplitude__raw_export"] = 0  # time for its next look
        assert not pools.claim(EXPORT_POOL, "amplitude__raw_export")  # reaps, looks again at once
        assert pools.interval_to_next_pending_claim_check() == 0
        assert pools.claim(EXPORT_POOL, "amplitude__raw_export")
    assert instance.get_run_by_id(held_by).status == dg.DagsterRunStatus.FAILURE
    (event,) = [e for e in instance.all_logs(waiter.run_id)
                if "Waiting for pool amplitude_export" in (e.message or "")]
    assert f"run {held_by} (STARTED) is dead" in event.message

def test_the_pool_wait_bound_is_five_minutes_unless_configured():
    assert pool_wait_seconds(None, {}) == 300
    assert pool_wait_seconds(None, {"POOL_WAIT_SECONDS": "12.5"}) == 12.5
    assert pool_wait_seconds(7, {"POOL_WAIT_SECONDS": "12.5"}) == 7
    for bad in ("soon", "0", "-1"):
        with pytest.raises(ValueError, match=r"POOL_WAIT_SECONDS|more than 0"):
            pool_wait_seconds(None, {"POOL_WAIT_SECONDS": bad})


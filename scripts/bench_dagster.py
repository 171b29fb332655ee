"""`dagster asset materialize` of the bench hour, measured as an operator would run it.

Peak RSS is reported two ways: the largest single process of the tree (what ``/usr/bin/time -v``
reports, from ``wait4``: Dagster runs each step in a child process) and the largest sum over the
whole tree at any moment (sampled from ``/proc`` every 50 ms). Start-up is the same command on an
hour that holds no events, and its time is split along the run's own event log, so the report says
where the seconds go before and between the steps.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY_FORMAT = "%Y-%m-%d-%H:%M"


def _tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, in kB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as statm:
                resident = int(statm.read().split()[1])
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = resident * os.sysconf("SC_PAGE_SIZE") // 1024
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += rss.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total


def materialize(url: str, key: str, secret: str, hour: datetime, work: Path,
                extra_env: dict[str, str] | None = None) -> dict:
    """``extra_env``: the settings of another way in (the storage export's)."""
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "AMPLITUDE_API_KEY": key,
           "AMPLITUDE_SECRET_KEY": secret, "AMPLITUDE_BASE_URL": url,
           "AMPLITUDE_START": f"{hour - timedelta(hours=1):%Y-%m-%dT%H}",
           "WAREHOUSE_PATH": str(work / "warehouse.duckdb"), "LAKE_ROOT": str(work / "lake"),
           **(extra_env or {})}
    # An operator's instance exists before the run; creating it is not part of the run.
    subprocess.run([sys.executable, "-m", "dagster", "instance", "migrate"], env=env, cwd=ROOT,
                   check=True, capture_output=True)
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "assets.definitions",
               "--select", "*amplitude/events", "--partition", hour.strftime(KEY_FORMAT)]
    started = time.time()
    with open(work / "dagster.log", "w") as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.time(), _tree_rss_kb(process.pid)))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
    ended = time.time()
    if os.waitstatus_to_exitcode(status):
        lines = (work / "dagster.log").read_text().splitlines()
        why = [line for line in lines if "upload hour" in line or "refused" in line][:8]
        raise SystemExit("dagster asset materialize failed:\n" + "\n".join(why + lines[-30:]))
    return {"seconds": ended - started, "largest_process_mb": usage.ru_maxrss / 1024,
            "tree_mb": max(kb for _, kb in samples) / 1024,
            "phases": _phases(home, started, ended, samples)}


def _phases(home: Path, started: float, ended: float,
            samples: list[tuple[float, int]]) -> list[tuple[str, float, float]]:
    """Seconds between the command's start, the run's events and the command's exit, with the
    tree's peak resident memory (MB) in each span."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(limit=1)
        marks = [("command started", started)]
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None:
                continue
            kind = event.event_type_value
            if kind in ("PIPELINE_STARTING", "PIPELINE_START", "STEP_START", "STEP_SUCCESS",
                        "PIPELINE_SUCCESS"):
                label = f"{kind} {event.step_key or ''}".strip()
                marks.append((label, record.timestamp))
        marks.append(("command exited", ended))
    spans = []
    for (a, ta), (b, tb) in itertools.pairwise(marks):
        inside = [kb for t, kb in samples if ta <= t <= tb] or [0]
        spans.append((f"{a} -> {b}", tb - ta, max(inside) / 1024))
    return spans


def report(label: str, result: dict) -> None:
    print(f"\ndagster asset materialize, {label}: {result['seconds']:.1f} s, largest process "
          f"{result['largest_process_mb']:.0f} MB, whole tree {result['tree_mb']:.0f} MB")
    for phase, seconds, peak in result["phases"]:
        print(f"  {seconds:7.2f} s  {peak:6.0f} MB  {phase}")


def run(sim, hour: datetime, empty_hour: datetime) -> None:
    """The bench hour, then an empty hour for start-up alone."""
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as work:
        result = materialize(sim.url, sim.config.api_key, sim.config.secret_key, hour,
                             Path(work) / "hour")
        report(f"hour {hour:%Y-%m-%dT%H}", result)
        empty = materialize(sim.url, sim.config.api_key, sim.config.secret_key, empty_hour,
                            Path(work) / "empty")
        report(f"empty hour {empty_hour:%Y-%m-%dT%H} (start-up)", empty)

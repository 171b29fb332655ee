"""The README's first command: a day of upload hours through Dagster, from the bundled simulator.

Starts the Amplitude-compatible simulator on 127.0.0.1, points the code location at it through
the same environment variables a real deployment uses, materializes ``*amplitude/events`` for a
partition range with the Dagster CLI, and prints a short SQL summary of the warehouse.

The CLI's full output goes to ``<data>/demo.log``; the terminal gets one line per stage as it
finishes, with figures read from the run's event log in the Dagster instance (``--verbose``
streams the full log to the terminal as well).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import HourProfile, Simulator, SimulatorConfig  # noqa: E402

if TYPE_CHECKING:
    import dagster as dg

SUMMARY = {
    "Rows per upload date": """
        SELECT _upload_hour::DATE AS upload_date, count(*) AS events,
               count(DISTINCT _upload_hour) AS hours_loaded,
               count(*) FILTER (WHERE event_time < _upload_hour - INTERVAL 1 DAY) AS late_by_a_day,
               count(_extras) AS with_unknown_fields
        FROM amplitude.events GROUP BY ALL ORDER BY 1""",
    "Top event types": """
        SELECT event_type, count(*) AS events, count(DISTINCT user_id) AS users,
               count(*) FILTER (WHERE session_id = -1) AS outside_sessions,
               round(median(extract(epoch FROM server_upload_time - event_time)), 1)
                   AS median_delay_s
        FROM amplitude.events GROUP BY ALL ORDER BY events DESC LIMIT 6""",
    "Loads ledger": """
        SELECT count(*) AS hours, sum(rows) AS rows, sum(archive_members) AS members,
               round(sum(bytes_downloaded) / 1e6, 1) AS mb_downloaded,
               count(DISTINCT request_window) AS export_requests,
               round(sum(load_seconds), 2) AS load_seconds
        FROM amplitude._loads""",
}

# Step keys of the three assets, in run order, and the names printed for them.
STAGES = {
    "amplitude__raw_export": "amplitude/raw_export",
    "amplitude__events_parquet": "amplitude/events_parquet",
    "amplitude__events": "amplitude/events",
}
TAIL_LINES = 30
# "... - dagster - DEBUG - <job> - <run id> - <pid> - <step key> - STEP_SUCCESS - ..."
RUN_ID = re.compile(r" - dagster - \w+ - \S+ - ([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}) - ")
STEP_END = re.compile(r" - (\S+) - (STEP_SUCCESS|STEP_FAILURE) - ")


def dagster_home(home: Path) -> Path:
    """Dagster reads dagster.yaml from $DAGSTER_HOME, not the working folder; put it there."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def print_summary(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        for title, sql in SUMMARY.items():
            cursor = con.execute(sql)
            print(f"\n{title}")
            print(" | ".join(d[0] for d in cursor.description))
            for row in cursor.fetchall():
                print(" | ".join("" if v is None else str(v) for v in row))


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


class RunWatcher:
    """Reads a finished step's figures from the run's event log in the Dagster instance.

    The per-hour figures are the materialization metadata assets/events.py records for each
    partition; the seconds are the step's own duration from its STEP_SUCCESS event.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.run_id: str | None = None
        self.printed: set[str] = set()
        self._instance: dg.DagsterInstance | None = None

    @property
    def instance(self) -> dg.DagsterInstance:
        if self._instance is None:  # imported late: the CLI starts up meanwhile
            import dagster as dg

            self._instance = dg.DagsterInstance.from_config(str(self.home))
        return self._instance

    def close(self) -> None:
        if self._instance is not None:
            self._instance.dispose()

    def step_events(self, step: str, wait: float = 10.0) -> tuple[dict, float] | None:
        """Per-partition metadata and seconds of a succeeded step, once the instance has it."""
        from dagster import DagsterEventType

        deadline = time.monotonic() + wait
        while True:
            entries = self.instance.all_logs(self.run_id, of_type={
                DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.STEP_SUCCESS})
            hours: dict[str, dict] = {}
            seconds = None
            for entry in entries:
                event = entry.dagster_event
                if event.step_key != step:
                    continue
                if event.event_type == DagsterEventType.STEP_SUCCESS:
                    seconds = event.event_specific_data.duration_ms / 1000
                elif (mat := event.step_materialization_data.materialization).partition:
                    hours[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
            if seconds is not None or time.monotonic() > deadline:
                return (hours, seconds) if seconds is not None else None
            time.sleep(0.2)

    def stage_line(self, step: str) -> str:
        name = STAGES[step]
        found = self.step_events(step) if self.run_id else None
        if found is None:
            return f"{name:<25} done (no figures in the event log)"
        hours, seconds = found
        figures = [plural(len(hours), "hour")]

        def total(key: str) -> float:
            return sum(meta.get(key) or 0 for meta in hours.values())

        if step == "amplitude__raw_export":
            windows = {m.get("request_window"): m.get("window_requests", 0) for m in hours.values()}
            figures += [plural(sum(windows.values()), "export request"),
                        plural(int(total("archive_members")), "member"),
                        f"{total('bytes_downloaded') / 1e6:.1f} MB",
                        f"fetch {total('fetch_seconds'):.2f} s"]
        else:
            figures.append(plural(int(total("dagster/row_count")), "row"))
            work = "normalize" if step == "amplitude__events_parquet" else "load"
            figures.append(f"{work} {total(f'{work}_seconds'):.2f} s")
        figures.append(f"step {seconds:.2f} s")
        return f"{name:<25} " + ", ".join(figures)

    def watch(self, line: str) -> None:
        """Print a stage's line as soon as the CLI logs that its step ended."""
        if self.run_id is None and (found := RUN_ID.search(line)):
            self.run_id = found.group(1)
        ended = STEP_END.search(line)
        if not ended or ended.group(1) not in STAGES or ended.group(1) in self.printed:
            return
        step, outcome = ended.groups()
        self.printed.add(step)
        if outcome == "STEP_FAILURE":
            print(f"{STAGES[step]:<25} FAILED", flush=True)
        else:
            print(self.stage_line(step), flush=True)

    def finish(self) -> None:
        """Print any stage whose end the log did not show, from the event log."""
        for step in STAGES:
            if step not in self.printed:
                self.printed.add(step)
                print(self.stage_line(step), flush=True)


def materialize(command: list[str], env: dict, log: Path, watcher: RunWatcher,
                verbose: bool) -> int:
    """Run the CLI with its output in ``log`` (and on stderr if verbose); return its exit code."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    echo: TextIO | None = sys.stderr if verbose else None
    with log.open("w") as out, subprocess.Popen(
        command, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    ) as process:
        # Import dagster while the CLI starts, so the first stage line is not late.
        threading.Thread(target=__import__, args=("dagster",), daemon=True).start()
        for line in process.stdout:
            out.write(line)
            out.flush()
            tail.append(line)
            if echo:
                echo.write(line)
                echo.flush()
            watcher.watch(line)
        code = process.wait()
    if code:
        if not verbose:
            print(f"\n--- last {len(tail)} lines of {log} ---", file=sys.stderr)
            sys.stderr.writelines(tail)
        print(f"dagster exited with {code}; full log: {log}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default="2026-03-01", help="UTC day to export (YYYY-MM-DD)")
    parser.add_argument("--hours", type=int, default=24, help="hours of that day to materialize")
    parser.add_argument("--events-per-hour", type=int, default=1500, help="simulator volume")
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="lake and warehouse")
    parser.add_argument("--dagster-home", type=Path, default=ROOT / ".dagster_home",
                        help="the Dagster instance (runs, event logs) the demo uses")
    parser.add_argument("--verbose", action="store_true",
                        help="stream the full Dagster log to the terminal too")
    args = parser.parse_args(argv)

    first = datetime.strptime(args.day, "%Y-%m-%d").replace(tzinfo=UTC)
    last = first + timedelta(hours=args.hours - 1)
    span = f"{first:%Y-%m-%d-%H:%M}...{last:%Y-%m-%d-%H:%M}"
    args.data.mkdir(parents=True, exist_ok=True)
    log = args.data / "demo.log"
    home = dagster_home(args.dagster_home)
    config = SimulatorConfig(profile=HourProfile(base=args.events_per_hour), events_per_member=5000)
    watcher = RunWatcher(home)
    started = time.monotonic()
    try:
        with Simulator(config) as sim:
            env = {
                **os.environ,
                "AMPLITUDE_API_KEY": config.api_key,
                "AMPLITUDE_SECRET_KEY": config.secret_key,
                "AMPLITUDE_BASE_URL": sim.url,
                "AMPLITUDE_START": f"{first:%Y-%m-%dT%H}",
                "WAREHOUSE_PATH": str(args.data / "warehouse.duckdb"),
                "LAKE_ROOT": str(args.data / "lake"),
                "DAGSTER_HOME": str(home),
            }
            command = [
                sys.executable, "-m", "dagster", "asset", "materialize", "-m",
                "assets.definitions", "--select", "*amplitude/events", "--partition-range", span,
            ]
            print(f"simulator at {sim.url}; materializing *amplitude/events for {span} "
                  f"({plural(args.hours, 'hour')}); full log: {log}", flush=True)
            if materialize(command, env, log, watcher, args.verbose):
                return 1
            watcher.finish()
            print(f"run {watcher.run_id} succeeded in {time.monotonic() - started:.1f} s")
            print(f"\n{len(sim.export_requests())} export request(s) served by the simulator")
    finally:
        watcher.close()
    print_summary(args.data / "warehouse.duckdb")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's first command: a day of upload hours through Dagster, from the bundled simulator.

Starts the Amplitude-compatible simulator on 127.0.0.1, points the code location at it through
the same environment variables a real deployment uses, materializes ``*amplitude/events`` for a
partition range with the Dagster CLI, and prints a short SQL summary of the warehouse.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.simulator import HourProfile, Simulator, SimulatorConfig  # noqa: E402

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


def dagster_home(root: Path) -> Path:
    """Dagster reads dagster.yaml from $DAGSTER_HOME, not the working folder; put it there."""
    home = root / ".dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(root / "dagster.yaml", home / "dagster.yaml")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default="2026-03-01", help="UTC day to export (YYYY-MM-DD)")
    parser.add_argument("--hours", type=int, default=24, help="hours of that day to materialize")
    parser.add_argument("--events-per-hour", type=int, default=1500, help="simulator volume")
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="lake and warehouse")
    args = parser.parse_args(argv)

    first = datetime.strptime(args.day, "%Y-%m-%d").replace(tzinfo=UTC)
    last = first + timedelta(hours=args.hours - 1)
    config = SimulatorConfig(profile=HourProfile(base=args.events_per_hour), events_per_member=5000)
    with Simulator(config) as sim:
        env = {
            **os.environ,
            "AMPLITUDE_API_KEY": config.api_key,
            "AMPLITUDE_SECRET_KEY": config.secret_key,
            "AMPLITUDE_BASE_URL": sim.url,
            "AMPLITUDE_START": f"{first:%Y-%m-%dT%H}",
            "WAREHOUSE_PATH": str(args.data / "warehouse.duckdb"),
            "LAKE_ROOT": str(args.data / "lake"),
            "DAGSTER_HOME": str(dagster_home(ROOT)),
        }
        command = [
            sys.executable, "-m", "dagster", "asset", "materialize", "-m", "assets.definitions",
            "--select", "*amplitude/events",
            "--partition-range", f"{first:%Y-%m-%d-%H:%M}...{last:%Y-%m-%d-%H:%M}",
        ]
        print(f"simulator at {sim.url}; running: {' '.join(command[2:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT, env=env, check=False)
        if done.returncode:
            print(f"dagster exited with {done.returncode}", file=sys.stderr)
            return done.returncode
        print(f"\n{len(sim.export_requests())} export request(s) served by the simulator")
    print_summary(args.data / "warehouse.duckdb")
    return 0


if __name__ == "__main__":
    sys.exit(main())

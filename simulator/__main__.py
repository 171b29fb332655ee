"""``python -m simulator``: serve the simulated Amplitude project until Ctrl-C.

``--first-hour``/``--last-hour`` (``YYYYMMDDTHH``, UTC) bound the project, which the Dashboard
counts need; ``--timezone`` is the project's zone.

``--merge-share F`` merges that share of the users (``merges``; needs the bounded span),
within organization ``--org-id``.

``--bench N`` instead builds one archive of an hour holding N events and reports the speed
(``--bench N --lines-only``: only the event generation, without gzip and zip).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

from simulator.bench import bench_archive, bench_lines
from simulator.config import SimulatorConfig
from simulator.generator import HourProfile
from simulator.server import Simulator


def _config(
    args: argparse.Namespace, hour_counts: dict[datetime, int] | None = None
) -> SimulatorConfig:
    return SimulatorConfig(
        project_id=args.project_id,
        api_key=args.api_key,
        secret_key=args.secret_key,
        seed=args.seed,
        profile=HourProfile(base=args.base),
        hour_counts=hour_counts or {},
        events_per_member=args.events_per_member,
        first_member_number=args.first_member_number,
        project_folder=not args.no_project_folder,
        max_hours_before_504=args.max_hours_before_504,
        gzip_level=args.gzip_level,
        workers=args.workers,
        first_hour=args.first_hour,
        last_hour=args.last_hour,
        timezone=args.timezone,
        merge_share=args.merge_share,
        org_id=args.org_id,
    )


def _hour(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H").replace(tzinfo=UTC)


def _bench(args: argparse.Namespace) -> int:
    hour = datetime(2025, 7, 1, 17, tzinfo=UTC)
    config = _config(args, {hour: args.bench})
    print(bench_lines(config, hour) if args.lines_only else bench_archive(config, hour))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    defaults = SimulatorConfig()
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--project-id", type=int, default=defaults.project_id)
    parser.add_argument("--api-key", default=defaults.api_key)
    parser.add_argument("--secret-key", default=defaults.secret_key)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--base", type=int, default=HourProfile().base, help="events per hour")
    parser.add_argument("--events-per-member", type=int, default=defaults.events_per_member)
    parser.add_argument("--first-member-number", type=int, choices=(0, 1), default=0)
    parser.add_argument("--no-project-folder", action="store_true")
    parser.add_argument("--max-hours-before-504", type=int, default=None)
    parser.add_argument("--gzip-level", type=int, default=defaults.gzip_level)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--first-hour", type=_hour, default=None, help="YYYYMMDDTHH (UTC)")
    parser.add_argument("--last-hour", type=_hour, default=None, help="YYYYMMDDTHH (UTC)")
    parser.add_argument("--timezone", default=defaults.timezone, help="the project's zone")
    parser.add_argument("--merge-share", type=float, default=0.0, help="users merged (0..1)")
    parser.add_argument("--org-id", type=int, default=defaults.org_id)
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--bench", type=int, metavar="N", help="time building an N-event hour")
    parser.add_argument("--lines-only", action="store_true", help="--bench without gzip and zip")
    args = parser.parse_args(argv)
    if args.bench:
        return _bench(args)
    config = _config(args)
    with Simulator(config, port=args.port, verbose=args.verbose) as sim:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        day = now - timedelta(days=1)
        print(f"Amplitude Export API simulator at {sim.url}  (project {config.project_id})")
        print(f"  API key:    {config.api_key}")
        print(f"  secret key: {config.secret_key}   (fake credentials, for this simulator only)")
        print(
            f"  try: curl -u {config.api_key}:{config.secret_key} -o export.zip "
            f"'{sim.url}/api/2/export?start={day:%Y%m%d}T00&end={day:%Y%m%d}T23'"
        )
        print(f"  cohort files are redirected to the storage host at {sim.storage_url}")
        print("Ctrl-C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

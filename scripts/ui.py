"""`make ui`: the Dagster UI on the demo's data, against the simulator with the demo's settings.

Starts the simulator on 127.0.0.1 with the settings of ``scripts/demo.py`` (same project, same
volume, same first partition), then ``dagster dev -w workspace.yaml`` (webserver and daemon) on
127.0.0.1 with the demo's environment and its Dagster instance (``.dagster_home``), so the UI
shows the demo's runs and materializations and can launch more against the same simulator. If
there is no demo warehouse yet, it runs the demo first. Ctrl-C stops both.

The functions that start and stop ``dagster dev`` are also the ones ``tests/ui`` uses, so the
test exercises the same start-up and shut-down path as ``make ui``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import HourProfile, Simulator, SimulatorConfig  # noqa: E402

# scripts/demo.py's defaults (tests/ui/test_ui.py checks that they still are).
DEMO_DAY = "2026-03-01"
DEMO_EVENTS_PER_HOUR = 1500
DEMO_EVENTS_PER_MEMBER = 5000

# A child ignores SIGINT when its parent did (a job started in the background by a script), and
# `dagster dev` maps SIGTERM to SIGINT: it would then ignore both. Reset SIGINT before exec'ing.
_SIGINT_DEFAULT_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def demo_config(events_per_hour: int = DEMO_EVENTS_PER_HOUR) -> SimulatorConfig:
    """The simulator project of ``make demo``."""
    return SimulatorConfig(profile=HourProfile(base=events_per_hour),
                           events_per_member=DEMO_EVENTS_PER_MEMBER)


def code_location_env(config: SimulatorConfig, simulator_url: str, *, start: datetime,
                      data: Path, home: Path) -> dict[str, str]:
    """The environment the code location reads (README, Configuration), as the demo sets it."""
    return {
        **os.environ,
        "AMPLITUDE_API_KEY": config.api_key,
        "AMPLITUDE_SECRET_KEY": config.secret_key,
        "AMPLITUDE_BASE_URL": simulator_url,
        "AMPLITUDE_START": f"{start:%Y-%m-%dT%H}",
        "WAREHOUSE_PATH": str(data / "warehouse.duckdb"),
        "LAKE_ROOT": str(data / "lake"),
        "DAGSTER_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    }


def dagster_home(home: Path) -> Path:
    """Dagster reads dagster.yaml from $DAGSTER_HOME (telemetry off, the pools); put it there."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_bytes((ROOT / "dagster.yaml").read_bytes())
    return home


def start_dagster_dev(env: dict[str, str], *, port: int, host: str = "127.0.0.1",
                      log: IO[str] | None = None) -> subprocess.Popen[str]:
    """``dagster dev -w workspace.yaml`` in a process group of its own.

    Its webserver, daemon, code server and run workers all stay in that group, so
    ``stop_dagster_dev`` can check that none outlives it. Output goes to ``log`` (else inherited).
    """
    command = [sys.executable, "-c", _SIGINT_DEFAULT_EXEC, sys.executable, "-m", "dagster",
               "dev", "-w", str(ROOT / "workspace.yaml"), "-h", host, "-p", str(port)]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT if log is not None else None, text=True,
        start_new_session=True,
    )


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in "ZX":
            members.append(int(entry.name))
    return sorted(members)


def _wait_for_group(pgid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (members := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return members


def stop_dagster_dev(process: subprocess.Popen[str], timeout: float = 60.0) -> list[int]:
    """Stop ``dagster dev`` as Ctrl-C does, then make sure its whole process group is gone.

    SIGINT to ``dagster dev`` alone: it tells its webserver and daemon to shut down through their
    pipes and stops its code server. If it or any process of its group is still there after
    ``timeout`` seconds, the group gets SIGTERM, then SIGKILL. Returns the PIDs that had to be
    signalled after the graceful stop (empty when ``dagster dev`` cleaned up after itself).
    """
    pgid = process.pid
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    leftovers = _wait_for_group(pgid, 10 if process.poll() is not None else 0)
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not group_members(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        _wait_for_group(pgid, grace)
    process.wait(timeout=5)
    return leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000, help="the UI's port on 127.0.0.1")
    parser.add_argument("--simulator-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="lake and warehouse")
    parser.add_argument("--dagster-home", type=Path, default=ROOT / ".dagster_home",
                        help="the Dagster instance (runs, event logs) the demo used")
    args = parser.parse_args(argv)

    if not (args.data / "warehouse.duckdb").exists():
        print(f"no demo data in {args.data} yet: running the demo first (make demo)", flush=True)
        demo = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--data", str(args.data),
                "--dagster-home", str(args.dagster_home)]
        if subprocess.run(demo, cwd=ROOT, check=False).returncode:
            return 1
    home = dagster_home(args.dagster_home)
    config = demo_config()
    start = datetime.strptime(DEMO_DAY, "%Y-%m-%d").replace(tzinfo=UTC)
    with Simulator(config, port=args.simulator_port) as sim:
        env = code_location_env(config, sim.url, start=start, data=args.data, home=home)
        print(f"simulator at {sim.url} (the demo's project); Dagster UI at "
              f"http://127.0.0.1:{args.port} once it has loaded; DAGSTER_HOME={home}; "
              "Ctrl-C stops both", flush=True)
        process = start_dagster_dev(env, port=args.port)
        code = 0
        try:
            code = process.wait()
            print(f"dagster dev exited with {code}", file=sys.stderr)
        except KeyboardInterrupt:
            print("stopping dagster dev and the simulator", file=sys.stderr, flush=True)
        finally:
            # dagster dev runs in its own process group: Ctrl-C reaches only this script, which
            # passes on one SIGINT, so its shutdown is not interrupted by a second one.
            while True:
                try:
                    stop_dagster_dev(process)
                    break
                except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for a clean shutdown
                    for pid in group_members(process.pid):
                        os.kill(pid, signal.SIGKILL)
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main())

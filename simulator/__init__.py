"""An Amplitude-compatible Export API simulator: the independent "other side" tests compare
against. Standard library only; imports nothing from the rest of ``pipeline``.

- ``Simulator`` / ``SimulatorConfig``: the HTTP server (``server``, ``protocol``, ``config``).
- ``Fault``: injected failures (``faults``).
- ``build_archive`` / ``plan``: the zip layout (``archive``).
- ``hour_lines`` / ``HourProfile``: the deterministic events (``generator``).
"""

from simulator.archive import Archive, ArchiveTooLarge, Member, build_archive, plan
from simulator.config import SimulatorConfig
from simulator.faults import Fault
from simulator.generator import HourProfile, hour_lines
from simulator.protocol import EXPORT_PATH, RequestRecord
from simulator.server import Simulator

__all__ = [
    "EXPORT_PATH",
    "Archive",
    "ArchiveTooLarge",
    "Fault",
    "HourProfile",
    "Member",
    "RequestRecord",
    "Simulator",
    "SimulatorConfig",
    "build_archive",
    "hour_lines",
    "plan",
]

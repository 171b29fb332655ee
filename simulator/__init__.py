"""An Amplitude-compatible simulator: the independent "other side" tests compare against.
Standard library only; imports nothing from ``pipeline``, so a misreading of the API cannot hide
on both sides.

- ``Simulator`` / ``SimulatorConfig``: the HTTP servers (``server``, ``api``, ``protocol``,
  ``storage``, ``config``).
- Export: ``Fault`` (``faults``), ``build_archive`` / ``plan`` (``archive``), ``hour_lines`` /
  ``HourProfile`` (``generator``).
- Cohorts (``cohorts``, ``cohort_defs``, ``members``), taxonomy (``taxonomy``), Dashboard REST
  (``dashboard``, ``counts``), and the rate limits (``limits``: ``RateLimits``).
- Mixpanel's raw export, on a host of its own: ``MixpanelSimulator``, ``MixpanelConfig`` and
  ``MixpanelFault`` (``mixpanel``, ``mixpanel_data``).
"""

from simulator.archive import Archive, ArchiveTooLarge, Member, build_archive, plan
from simulator.cohort_defs import DEFAULT_COHORTS, Cohort
from simulator.config import SimulatorConfig
from simulator.counts import DailyCounts
from simulator.faults import Fault
from simulator.generator import HourProfile, hour_lines
from simulator.limits import RateLimits
from simulator.mixpanel import MixpanelFault, MixpanelSimulator
from simulator.mixpanel_data import MixpanelConfig
from simulator.protocol import EXPORT_PATH, RequestRecord
from simulator.server import Simulator

__all__ = [
    "DEFAULT_COHORTS",
    "EXPORT_PATH",
    "Archive",
    "ArchiveTooLarge",
    "Cohort",
    "DailyCounts",
    "Fault",
    "HourProfile",
    "Member",
    "MixpanelConfig",
    "MixpanelFault",
    "MixpanelSimulator",
    "RateLimits",
    "RequestRecord",
    "Simulator",
    "SimulatorConfig",
    "build_archive",
    "hour_lines",
    "plan",
]

"""An Amplitude-compatible simulator: the independent "other side" tests compare against.
Standard library only (but boto3, imported by the storage export when it makes its S3 client);
imports nothing from ``pipeline``, so a misreading of the API cannot hide on both sides.

- ``Simulator`` / ``SimulatorConfig``: the HTTP servers (``server``, ``api``, ``protocol``,
  ``storage``, ``config``).
- Export: ``Fault`` (``faults``), ``build_archive`` / ``plan`` (``archive``), ``hour_lines`` /
  ``HourProfile`` (``generator``).
- Cohorts (``cohorts``, ``cohort_defs``, ``members``), taxonomy (``taxonomy``), Dashboard REST
  (``dashboard``, ``counts``), annotations (``annotations``: ``Annotation``,
  ``AnnotationCategory``), and the rate limits (``limits``: ``RateLimits``).
- Merged users (``merges``: ``MergePlan``, ``MergedUser``; ``SimulatorConfig.merge_share``) and
  the storage export into an S3 bucket (``storage_export``: ``StorageExport``; ``storage_layout``:
  ``S3Bucket``, ``StorageLayout``).
- Mixpanel's raw export, on a host of its own: ``MixpanelSimulator``, ``MixpanelConfig`` and
  ``MixpanelFault`` (``mixpanel``, ``mixpanel_data``).
"""

from simulator.annotations import Annotation, AnnotationCategory
from simulator.archive import Archive, ArchiveTooLarge, Member, build_archive, plan
from simulator.cohort_defs import DEFAULT_COHORTS, Cohort
from simulator.config import SimulatorConfig
from simulator.counts import DailyCounts
from simulator.faults import Fault
from simulator.generator import HourProfile, hour_lines
from simulator.limits import RateLimits
from simulator.merges import MergedUser, MergePlan
from simulator.mixpanel import MixpanelFault, MixpanelSimulator
from simulator.mixpanel_data import MixpanelConfig
from simulator.protocol import EXPORT_PATH, RequestRecord
from simulator.server import Simulator
from simulator.storage_export import StorageExport
from simulator.storage_layout import S3Bucket, StorageLayout

__all__ = [
    "DEFAULT_COHORTS",
    "EXPORT_PATH",
    "Annotation",
    "AnnotationCategory",
    "Archive",
    "ArchiveTooLarge",
    "Cohort",
    "DailyCounts",
    "Fault",
    "HourProfile",
    "Member",
    "MergePlan",
    "MergedUser",
    "MixpanelConfig",
    "MixpanelFault",
    "MixpanelSimulator",
    "RateLimits",
    "RequestRecord",
    "S3Bucket",
    "Simulator",
    "SimulatorConfig",
    "StorageExport",
    "StorageLayout",
    "build_archive",
    "hour_lines",
    "plan",
]

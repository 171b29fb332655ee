"""What a source tells ``pipeline.forget`` about where a project keeps users' data.

The shared machinery knows no source: it asks each project's source for its
:class:`UserData` (``Source.user_data``), one per *partition family* that holds users (Amplitude's
upload hours of events, its cohort-member days; Mixpanel's days of events), and drives every one
the same way: find the partitions holding the users (the warehouse, the ledger, the lake), land
each again without their lines, rewrite its Parquet file without their rows, then delete their
rows and correct the ledger in one transaction. What differs between sources is here: names,
SQL, where files are, how a manifest is rewritten, and how a line is recognised as theirs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.forget.ids import Ids
from pipeline.forget.matching import Records
from pipeline.lake import Lake
from pipeline.source import Partition


@dataclass(frozen=True)
class Ledger:
    """The ledger of a family's loads: one row per loaded partition, naming the landing version
    (``landing_version``) and fetch (``fetched_at``) its rows came from."""

    table: str  # qualified: amplitude._loads
    key: str  # its partition column
    where: str = "true"  # the family's rows, in a ledger several families share
    rows: str = "rows"  # the column counting the partition's rows
    # Columns recomputed after the delete, each an SQL expression over the table's rows whose
    # partition column equals ``l.<key>`` (``l`` is the ledger row), e.g. a count of duplicates.
    recount: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Quarantine:
    """Lines a load set aside unparsed: matched by the ids' spellings as text."""

    table: str
    partition_column: str
    line_column: str


@dataclass(frozen=True)
class AuditColumns:
    """The columns of the project's ``_forget_requests`` that count this family's work (the
    common ones, ``landing_versions_written``, ``landing_versions_removed`` and
    ``parquet_files_rewritten``, add up every family's)."""

    partitions_rewritten: str  # partitions whose landing or Parquet file was rewritten
    landing_records_removed: str
    parquet_rows_removed: str
    rows_removed: str  # warehouse rows
    quarantined_removed: str | None = None


COMMON_COUNTS = ("landing_versions_written", "landing_versions_removed", "parquet_files_rewritten")


@dataclass(frozen=True)
class LandingFile:
    """A file of a new landing version: its name there and its size."""

    name: str
    bytes: int


# The manifest of a partition landed again: (its new version, for each file of the current one
# what became of it: None for a file dropped, as empty or as lost) -> the manifest's text.
Relanding = Callable[[str, Mapping[Path, LandingFile | None]], str]


@dataclass(frozen=True)
class Landing:
    """A partition's current landing, as its manifest names it."""

    version: str
    fetched_at: datetime | None  # kept by a rewrite: it is the same fetch
    files: tuple[Path, ...]  # local; one may be in another partition's version (carried forward)
    relanded: Relanding
    # Partitions landed from one fetch share its lines (a Mixpanel window's body under each of
    # its days): when one of them holds the users, all of them do.
    fetch: str | None = None


@dataclass(frozen=True, kw_only=True)
class UserData(ABC):
    """One partition family of one project that holds users' rows and lines."""

    lake: Lake  # local: forgetting rewrites files in place
    unit: str  # a partition, as messages name it: "upload hour", "day"
    table: str  # the warehouse table, qualified
    partition_column: str
    kinds: frozenset[str]  # the kinds of id (pipeline/forget/ids.py) its rows and lines hold
    # SQL true for a row of the users, over the table's rows and the Parquet files' alike; it
    # reads the ids from the temporary tables pipeline.forget.parquet.install creates, never
    # from SQL text (``parquet.holds``), and is never NULL.
    predicate: str
    ledger: Ledger
    parquet_options: str  # the COPY options its Parquet files are written with
    audit: AuditColumns
    quarantine: Quarantine | None = None
    drop_empty_files: bool = False  # a landing file left with no line leaves the manifest
    # Landings may share files (carried forward) or fetches with other partitions: every
    # landing of the family is read to find those a rewrite must take along.
    related: bool = False

    @abstractmethod
    def records(self, ids: Ids) -> Records:
        """Which records of a landing file are the users'."""

    @abstractmethod
    def landing_folder(self, partition: Partition) -> Path:
        """Where the partition's landing is (its manifest and versions), landed or not."""

    @abstractmethod
    def landed(self) -> dict[Partition, Path]:
        """Every landed partition, with its landing folder."""

    @abstractmethod
    def landing(self, partition: Partition) -> Landing | None:
        """The partition's current landing; None if it has none."""

    @abstractmethod
    def parquet_file(self, partition: Partition) -> Path:
        """Where the lake keeps the partition's Parquet file, whether or not it has one."""

    @abstractmethod
    def parquet_files(self) -> dict[Path, Partition]:
        """Every Parquet file of the family in the lake (``--scan-lake``)."""

    def version_files(self, version: Path) -> list[Path]:
        """The files of a landing version folder that hold lines (``--scan-landing`` reads
        superseded versions)."""
        return sorted(p for p in version.iterdir() if p.is_file())

"""Why a partition's last fetch or normalize failed, kept beside its landing.

A range run must not lose its good partitions to one bad one, so a stage that cannot fetch or
normalize a partition records why and goes on. The note outlives the run: the next stage skips
the partition, the load names it in its failure (and never loads a file an earlier fetch left
in its place), a later run of any stage sees it, and an operator finds the cause in the
partition's landing folder, ``_refused-<stage>.json``. The stage's next success removes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Generic, Literal, TypeVar

from pipeline.lake import Lake

Stage = Literal["fetch", "normalize"]
P = TypeVar("P")  # a partition: an upload hour, a day


@dataclass(frozen=True)
class Refusal:
    what: str  # the partition as messages name it: "upload hour 2026-03-01T07"
    stage: Stage
    cause: str
    run_id: str
    landing_version: str | None = None  # normalize: the landing it could not read
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __str__(self) -> str:
        cause = self.cause.removeprefix(f"{self.what}: ")  # the stages' errors name it too
        return f"{self.what}: {self.stage} failed: {cause}"


class Refusals(Generic[P]):
    """The notes of one kind of partition: ``folder`` is its landing folder, ``name`` how
    messages name it."""

    def __init__(self, lake: Lake, folder: Callable[[P], PurePath],
                 name: Callable[[P], str]) -> None:
        self.lake, self.folder, self.name = lake, folder, name

    def _path(self, partition: P, stage: Stage) -> PurePath:
        return self.folder(partition) / f"_refused-{stage}.json"

    def record(self, partition: P, stage: Stage, cause: str, run_id: str,
               landing_version: str | None = None) -> Refusal:
        refusal = Refusal(self.name(partition), stage, cause, run_id, landing_version)
        data = asdict(refusal) | {"at": refusal.at.isoformat()}
        self.lake.write_text(self._path(partition, stage), json.dumps(data, indent=2))
        return refusal

    def clear(self, partition: P, stage: Stage) -> None:
        self.lake.delete(self._path(partition, stage))

    def get(self, partition: P, stage: Stage) -> Refusal | None:
        text = self.lake.read_text(self._path(partition, stage))
        if text is None:
            return None
        data = json.loads(text)
        if "upload_hour" in data:  # a note written before notes named any kind of partition
            data["what"] = self.name(partition)
            del data["upload_hour"]
        data["at"] = datetime.fromisoformat(data["at"])
        return Refusal(**data)

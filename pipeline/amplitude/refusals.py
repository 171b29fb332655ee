"""Why an upload hour's last fetch or normalize failed, kept beside its landing.

A range run must not lose its good hours to one bad one, so a stage that cannot fetch or normalize
an hour records why and goes on. The note outlives the run: the next stage skips the hour, the
load names it in its failure, a later run of any stage sees it, and an operator finds the cause in
``landing/.../upload_hour=HH/_refused-<stage>.json``. The stage's next success removes it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Literal

from pipeline import lineage
from pipeline.amplitude.landing import AmplitudeLake, LandedHour

Stage = Literal["fetch", "normalize"]


@dataclass(frozen=True)
class Refusal:
    upload_hour: datetime
    stage: Stage
    cause: str
    run_id: str
    landing_version: str | None = None  # normalize: the landing it could not read
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __str__(self) -> str:
        hour = f"upload hour {self.upload_hour:%Y-%m-%dT%H}"
        cause = self.cause.removeprefix(f"{hour}: ")  # the stages' errors name the hour too
        return f"{hour}: {self.stage} failed: {cause}"


class Refusals:
    def __init__(self, lake: AmplitudeLake) -> None:
        self.lake = lake

    def _path(self, upload_hour: datetime, stage: Stage) -> PurePath:
        return self.lake.landing_dir(upload_hour) / f"_refused-{stage}.json"

    def record(self, refusal: Refusal) -> None:
        data = asdict(refusal) | {"upload_hour": refusal.upload_hour.isoformat(),
                                  "at": refusal.at.isoformat()}
        self.lake.write_text(self._path(refusal.upload_hour, refusal.stage),
                             json.dumps(data, indent=2))

    def clear(self, upload_hour: datetime, stage: Stage) -> None:
        self.lake.delete(self._path(upload_hour, stage))

    def get(self, upload_hour: datetime, stage: Stage) -> Refusal | None:
        text = self.lake.read_text(self._path(upload_hour, stage))
        if text is None:
            return None
        data = json.loads(text)
        data["upload_hour"] = datetime.fromisoformat(data["upload_hour"])
        data["at"] = datetime.fromisoformat(data["at"])
        return Refusal(**data)


def loadable(lake: AmplitudeLake, upload_hour: datetime, run_id: str) -> LandedHour | str:
    """The hour's landing if its Parquet file holds exactly that fetch; else why it cannot load.

    A file left by an earlier fetch would load stale rows under the new fetch's ledger row, and a
    fetch that failed in this run must fail its hour here too, not quietly reload the old one.
    """
    refusals = Refusals(lake)
    fetch = refusals.get(upload_hour, "fetch")
    if fetch is not None and fetch.run_id == run_id:
        return f"fetch failed: {fetch.cause}"
    landed = lake.landed_or_none(upload_hour)
    if landed is None:
        return "never landed: materialize amplitude/raw_export for it first"
    normalize = refusals.get(upload_hour, "normalize")
    if normalize is not None and normalize.landing_version == landed.version:
        return f"normalize failed: {normalize.cause}"
    parquet = lake.events_file(upload_hour)
    if parquet is None:
        return "no Parquet file: materialize amplitude/events_parquet for it first"
    with lake.connect() as con:
        built_from = lineage.landing_version_of(lake.url(parquet), con)
    if built_from is not None and built_from != landed.version:
        return (f"its Parquet file was built from landing {built_from}, not the current "
                f"{landed.version}: materialize amplitude/events_parquet for it again")
    return landed

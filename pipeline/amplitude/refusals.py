"""Whether an upload hour can load: its notes of refusal (``pipeline/refusals.py``) and the
landing its Parquet file was built from."""

from __future__ import annotations

from datetime import datetime

from pipeline import lineage
from pipeline.amplitude.landing import AmplitudeLake, LandedHour
from pipeline.refusals import Refusals


def hour_refusals(lake: AmplitudeLake) -> Refusals[datetime]:
    """The notes of the project's upload hours (``pipeline/refusals.py``)."""
    return Refusals(lake, lake.landing_dir, lambda hour: f"upload hour {hour:%Y-%m-%dT%H}")


def loadable(lake: AmplitudeLake, upload_hour: datetime, run_id: str) -> LandedHour | str:
    """The hour's landing if its Parquet file holds exactly that fetch; else why it cannot load.

    A file left by an earlier fetch would load stale rows under the new fetch's ledger row, and a
    fetch that failed in this run must fail its hour here too, not quietly reload the old one.
    """
    refusals = hour_refusals(lake)
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

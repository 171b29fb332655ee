"""Each snapshot day is non-empty and unique on its table's key, reported per day."""

from datetime import date

import dagster as dg
import duckdb

KEYS = {
    "cohorts": ("id",),
    "taxonomy_event_types": ("event_type",),
    "taxonomy_event_properties": ("event_type", "event_property"),
    "taxonomy_user_properties": ("user_property",),
    "events_list": ("name",),
    "daily_counts": ("event_date",),
    "cohort_members": ("cohort_id", "amplitude_id"),
}


def check_specs(table: str, partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(["amplitude", table])
    return [
        dg.AssetCheckSpec("non_empty", asset=key, partitions_def=partitions, description=(
            "The day's snapshot holds at least one row (a warning: a project may have none).")),
        dg.AssetCheckSpec("keys_unique", asset=key, partitions_def=partitions, description=(
            f"No two rows of a day share ({', '.join(KEYS[table])}).")),
    ]


class DayChecks:
    """Collects one run's days; a range logs each day on its partition, and the step's results
    name the failing days (Dagster wants one result per check from a step)."""

    def __init__(self, context: dg.AssetExecutionContext, table: str, days: int) -> None:
        self.context, self.table, self.days = context, table, days
        self.failing: dict[str, list[str]] = {"non_empty": [], "keys_unique": []}
        self.last: dict[str, dict[str, int]] = {}

    def measure(self, con: duckdb.DuckDBPyConnection, day: date) -> None:
        keys = ", ".join(f'"{k}"' for k in KEYS[self.table])
        row = con.execute(f"SELECT count(*), count(*) - count(DISTINCT ({keys})) "
                          f"FROM amplitude.{self.table} WHERE snapshot_date = ?", [day]).fetchone()
        rows, repeats = (int(v) for v in row) if row else (0, 0)
        outcomes = {"non_empty": (rows > 0, {"rows": rows}),
                    "keys_unique": (repeats == 0, {"duplicate_keys": repeats})}
        for name, (passed, metadata) in outcomes.items():
            if self.days > 1:
                self.context.log_event(dg.AssetCheckEvaluation(
                    asset_key=self.context.asset_key, check_name=name, passed=passed,
                    partition=day.isoformat(), metadata=metadata, severity=self._severity(name)))
            self.last[name] = metadata
            if not passed:
                self.failing[name].append(day.isoformat())

    @staticmethod
    def _severity(name: str) -> dg.AssetCheckSeverity:
        return dg.AssetCheckSeverity.WARN if name == "non_empty" else dg.AssetCheckSeverity.ERROR

    def results(self) -> list[dg.AssetCheckResult]:
        return [dg.AssetCheckResult(
            check_name=name, passed=not failing, severity=self._severity(name),
            metadata={**(self.last.get(name, {}) if self.days == 1 else {}),
                      "days_failing": len(failing), "failing_days": ", ".join(failing[:50])})
            for name, failing in self.failing.items()]

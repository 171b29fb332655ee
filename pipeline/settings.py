"""The environment, read once into typed settings.

The two keys are not here: they reach the client only through ``dagster.EnvVar``, at run time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.hours import parse_setting_hour

REGION_HOSTS = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
DEFAULT_START = "2026-01-01T00"
MAX_EXPORT_HOURS = 365 * 24  # the longest range one export request may span


class SettingsError(ValueError):
    pass


def export_base_url(region: str, base_url: str | None = None) -> str:
    """``AMPLITUDE_BASE_URL`` wins; otherwise the region picks Amplitude's host."""
    if base_url:
        return base_url.rstrip("/")
    try:
        return REGION_HOSTS[region.strip().lower()]
    except KeyError:
        raise SettingsError(
            f"AMPLITUDE_REGION={region!r} is not one of {sorted(REGION_HOSTS)}"
        ) from None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int,
         maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


@dataclass(frozen=True)
class Settings:
    region: str = "us"
    base_url: str = REGION_HOSTS["us"]
    start: datetime = field(default_factory=lambda: parse_setting_hour(DEFAULT_START))
    lag_hours: int = 2
    max_window_hours: int = 24
    warehouse_path: Path = Path("data/warehouse.duckdb")
    lake_root: Path = Path("data/lake")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        region = env.get("AMPLITUDE_REGION", "us").strip().lower() or "us"
        try:
            start = parse_setting_hour(env.get("AMPLITUDE_START") or DEFAULT_START)
        except ValueError as error:
            raise SettingsError(f"AMPLITUDE_START: {error}") from None
        return cls(
            region=region,
            base_url=export_base_url(region, env.get("AMPLITUDE_BASE_URL")),
            start=start,
            lag_hours=_int(env, "AMPLITUDE_LAG_HOURS", 2, minimum=0),
            max_window_hours=_int(env, "AMPLITUDE_MAX_WINDOW_HOURS", 24, minimum=1,
                                  maximum=MAX_EXPORT_HOURS),
            warehouse_path=Path(env.get("WAREHOUSE_PATH") or "data/warehouse.duckdb"),
            lake_root=Path(env.get("LAKE_ROOT") or "data/lake"),
        )

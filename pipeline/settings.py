"""The environment, read once into typed settings.

The two keys are not here: they reach the client only through ``dagster.EnvVar``, at run time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.environment import SettingsError, whole_number
from pipeline.hours import parse_setting_hour
from pipeline.mixpanel.settings import CREDENTIALS as MIXPANEL_CREDENTIALS

REGION_HOSTS = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
DEFAULT_START = "2026-01-01T00"
# Every credential the project reads from the environment (a base URL may carry one too, as
# user:password@). tests/e2e/test_secrets.py proves none appears in a log line, a Dagster event,
# metadata, an error or a file; a source or store that adds a credential adds it here.
CREDENTIALS = ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY", "ALERT_WEBHOOK_URL",
               "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "WAREHOUSE_CATALOG", "DAGSTER_PG_PASSWORD", "LIMITS_DSN", *MIXPANEL_CREDENTIALS)
MAX_EXPORT_HOURS = 365 * 24  # the longest range one export request may span


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
    return whole_number(env, name, default, minimum, maximum)


@dataclass(frozen=True)
class Settings:
    region: str = "us"
    base_url: str = REGION_HOSTS["us"]
    start: datetime = field(default_factory=lambda: parse_setting_hour(DEFAULT_START))
    lag_hours: int = 2
    max_window_hours: int = 24
    warehouse_path: Path = Path("data/warehouse.duckdb")
    lake_root: str = "data/lake"  # a local folder or s3://bucket/prefix
    # A DuckLake catalog (postgres:..., sqlite:PATH, FILE.ducklake); None keeps warehouse_path.
    # It may hold a password: never printed, and passed to Dagster as an EnvVar.
    warehouse_catalog: str | None = field(default=None, repr=False)
    warehouse_data_path: str = "data/lake/ducklake"  # DuckLake's own files, in the lake
    project_timezone: str = "UTC"
    counts_days: int = 35
    cohort_ids: tuple[str, ...] = ()  # empty: every cohort not archived
    cohort_max_size: int | None = None
    cohort_props: tuple[str, ...] = ()
    cohort_monthly_quota: int = 500
    cohort_quota_share: float = 0.8
    limits_path: Path = Path("data/.limits.sqlite")
    limits_dsn: bool = False  # LIMITS_DSN is set: the limiter's state is in PostgreSQL
    rate_limits: str | None = None  # JSON overriding limit groups (pipeline/amplitude/rate_limits)
    refetch_after_hours: int = 24  # a re-run fetches again only landings older than this
    settle_hours: int = 24  # the late-data re-fetch takes an hour again this long after it
    rejects: str = "fail"  # or "quarantine": malformed lines go to amplitude._rejects
    warehouse_lock_timeout_seconds: int = 300  # how long a load waits for another writer
    reconcile_settle_hours: int = 48  # a day is compared once this long after it ended is loaded
    reconcile_tolerance: float = 0.0  # the share a day's number may differ from Amplitude's

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
            lake_root=_lake_root(env),
            warehouse_catalog=env.get("WAREHOUSE_CATALOG", "").strip() or None,
            warehouse_data_path=(env.get("WAREHOUSE_DATA_PATH", "").strip()
                                 or _lake_root(env).rstrip("/") + "/ducklake"),
            project_timezone=_timezone(env, "AMPLITUDE_PROJECT_TIMEZONE"),
            counts_days=_int(env, "AMPLITUDE_COUNTS_DAYS", 35, minimum=1, maximum=365),
            cohort_ids=_list(env, "AMPLITUDE_COHORT_IDS"),
            cohort_max_size=(_int(env, "AMPLITUDE_COHORT_MAX_SIZE", 0, minimum=1)
                             if env.get("AMPLITUDE_COHORT_MAX_SIZE", "").strip() else None),
            cohort_props=_list(env, "AMPLITUDE_COHORT_PROPS"),
            cohort_monthly_quota=_int(env, "AMPLITUDE_COHORT_MONTHLY_QUOTA", 500, minimum=1),
            cohort_quota_share=_share(env, "AMPLITUDE_COHORT_QUOTA_SHARE", 0.8),
            limits_path=Path(env.get("LIMITS_PATH")
                             or Path(env.get("WAREHOUSE_PATH") or "data/warehouse.duckdb").parent
                             / ".limits.sqlite"),
            limits_dsn=bool(env.get("LIMITS_DSN", "").strip()),
            rate_limits=env.get("AMPLITUDE_RATE_LIMITS", "").strip() or None,
            refetch_after_hours=_int(env, "AMPLITUDE_REFETCH_AFTER_HOURS", 24, minimum=0),
            settle_hours=_int(env, "AMPLITUDE_SETTLE_HOURS", 24, minimum=1, maximum=24 * 30),
            rejects=_choice(env, "AMPLITUDE_REJECTS", ("fail", "quarantine")),
            warehouse_lock_timeout_seconds=_int(env, "WAREHOUSE_LOCK_TIMEOUT_SECONDS", 300,
                                                minimum=0, maximum=3600),
            reconcile_settle_hours=_int(env, "AMPLITUDE_RECONCILE_SETTLE_HOURS", 48, minimum=0,
                                        maximum=24 * 30),
            reconcile_tolerance=(_share(env, "AMPLITUDE_RECONCILE_TOLERANCE", 1.0)
                                 if env.get("AMPLITUDE_RECONCILE_TOLERANCE", "").strip()
                                 not in ("", "0", "0%") else 0.0),
        )


def _lake_root(env: Mapping[str, str]) -> str:
    root = env.get("LAKE_ROOT", "").strip() or "data/lake"
    if "://" in root and not root.startswith("s3://"):
        raise SettingsError(f"LAKE_ROOT={root!r}: a lake is a local folder or s3://bucket/prefix")
    return root


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.rstrip("%")) / (100 if raw.endswith("%") else 1)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a share such as 0.8 or 80%") from None
    if not 0 < value <= 1:
        raise SettingsError(f"{name}={raw!r} must lie above 0 and at most 1 (100%)")
    return value


def _timezone(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip() or "UTC"
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={raw!r} is not an IANA time zone such as "
                            "America/Los_Angeles") from None
    return raw

"""Settings: every variable the project reads, declared once, typed and checked when read.

One model for the shared parts (:class:`SharedSettings`: the lake, the warehouse, limits, the
executor, alerts, object storage) and one per source (``pipeline/<source>/settings.py``). A
source's model is read from the environment for the project configured there, or from a project's
YAML attributes (``assets/components``) with the same fields, checks and defaults. Each field's
variable is its name in capitals after the model's prefix (``lag_hours`` → ``AMPLITUDE_LAG_HOURS``)
unless the field names another (``json_schema_extra={"env": ...}``); ``docs/configuration.md`` is
generated from these models (``python -m pipeline.settings``).

A wrong value fails at once with the variable's name and what it should be, so a typo never
becomes a silent default. Secrets (``SecretStr``) are only ever checked for being set: Dagster
resources take them through ``EnvVar`` at run time, and no message quotes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(ValueError):
    """A setting that is missing or wrong; the message names the variable (or YAML key)."""


# ---- value types: each checks one kind of value and says what it should be ----------------

def _whole(minimum: int, maximum: int | None) -> Callable[[Any], int]:
    def check(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a whole number")
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValueError(f"{str(raw).strip()!r} is not a whole number") from None
        if value < minimum:
            raise ValueError(f"{value} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{value} must be at most {maximum}")
        return value
    return check


def whole(minimum: int, maximum: int | None = None) -> BeforeValidator:
    """For ``Annotated[int, whole(...)]``: a whole number in ``[minimum, maximum]``."""
    return BeforeValidator(_whole(minimum, maximum))


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        value = str(raw).strip().lower()
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return check


def choice(*choices: str) -> BeforeValidator:
    """For ``Annotated[str, choice(...)]``: one of ``choices``, in any case."""
    return BeforeValidator(_choice(choices))


def _seconds(raw: Any) -> float:
    text = str(raw).strip()
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{text!r} must be more than 0 seconds")
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
"""A positive number of seconds."""


def _share(raw: Any) -> float:
    text = str(raw).strip()
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a share such as 0.8 or 80%") from None
    if not 0 <= value <= 1:
        raise ValueError(f"{text!r} must lie between 0 and 1 (100%)")
    return value


Share = Annotated[float, BeforeValidator(_share)]
"""A share, ``0.8`` or ``80%``."""


def _zone(raw: Any) -> str:
    text = str(raw).strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not an IANA time zone such as America/Los_Angeles"
                         ) from None
    return text


TimeZone = Annotated[str, BeforeValidator(_zone)]
"""An IANA time zone name."""


def _items(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list | tuple):
        return tuple(str(item).strip() for item in raw if str(item).strip())
    return tuple(item.strip() for item in str(raw).split(",") if item.strip())


CommaList = Annotated[tuple[str, ...], BeforeValidator(_items)]
"""Items separated by commas (a list in YAML)."""


def _flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ValueError(f"{text!r} is not true or false")


Flag = Annotated[bool, BeforeValidator(_flag)]
"""true/false, yes/no or 1/0."""


def _lowered(raw: Any) -> str:
    return str(raw).strip().lower()


Lowered = Annotated[str, BeforeValidator(_lowered)]


# ---- reading a model from a mapping of variables ----------------------------------------------

_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("settings_env", default=None)


class _Variables(PydanticBaseSettingsSource):
    """The variables of ``_ENV`` (else the process's), each field under its variable's name;
    an unset or blank variable leaves the field's default."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if yaml_only(field):
            return None, field_name, False
        env = _ENV.get()
        raw = (os.environ if env is None else env).get(variable(self.settings_cls, field_name))
        return (raw if raw is not None and raw.strip() else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                found[name] = value
        return found


def current_env() -> Mapping[str, str]:
    """The variables a model is being read from (for a check that looks at which are set)."""
    env = _ENV.get()
    return os.environ if env is None else env


class EnvSettings(BaseSettings):
    """A model read from variables named by its prefix (``env_prefix``)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="")
    error: ClassVar[type[SettingsError]] = SettingsError

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Variables(settings_cls)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The model from ``env`` (default: the process's environment)."""
        token = _ENV.set(env)
        try:
            return cls()
        except ValidationError as error:
            raise cls.error(explain(error, cls, env)) from None
        finally:
            _ENV.reset(token)


def variable(model: type[BaseModel], field_name: str) -> str:
    """The variable a field is read from."""
    field = model.model_fields[field_name]
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    named = extra.get("env")
    if isinstance(named, str):
        return named
    prefix = str(getattr(model, "model_config", {}).get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def explain(error: ValidationError, model: type[BaseModel],
            env: Mapping[str, str] | None = None, *, where: str = "") -> str:
    """Each problem as ``VARIABLE='value' ...`` (or ``key: ...`` in YAML), secrets unquoted."""
    values = os.environ if env is None else env
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        cause = problem.get("ctx", {}).get("error")
        text = str(cause) if cause is not None else problem["msg"]
        if where:  # a YAML attribute
            lines.append(f"{where}: {'.'.join(map(str, problem['loc']))}: {text}")
            continue
        if field not in model.model_fields:
            lines.append(text)
            continue
        name = variable(model, field)
        secret = is_secret(model.model_fields[field])
        raw = values.get(name, "").strip()
        if cause is not None and not secret and text.lower().startswith(f"{raw!r}".lower()):
            lines.append(f"{name}={text}")  # "NAME='x' is not ..."
        elif cause is not None and not secret and raw and text.startswith(raw):
            lines.append(f"{name}={text}")  # "NAME=0 must be at least 1"
        else:
            lines.append(f"{name}: {text}")
    return "; ".join(lines)


def yaml_only(field: FieldInfo) -> bool:
    """A field a project's YAML sets but the environment does not (the names of the variables
    that hold its credentials: the environment's project uses the standard ones)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return bool(extra.get("yaml_only"))


def is_secret(field: FieldInfo) -> bool:
    return SecretStr in _types(field.annotation)


def _types(annotation: Any) -> set[Any]:
    args = getattr(annotation, "__args__", None)
    return {annotation} if not args else {t for a in args for t in _types(a)}


def secret_variables(*models: type[BaseModel]) -> tuple[str, ...]:
    """The variables of ``models`` that hold secrets."""
    return tuple(variable(m, name) for m in models for name, f in m.model_fields.items()
                 if is_secret(f))


# ---- the shared parts ---------------------------------------------------------------------------

def _lake_root(raw: Any) -> str:
    root = str(raw).strip()
    if "://" in root and not root.startswith("s3://"):
        raise ValueError(f"{root!r}: a lake is a local folder or s3://bucket/prefix")
    return root


def _env(name: str) -> Any:
    return {"env": name}


class SharedSettings(EnvSettings):
    """Where the lake and the warehouse are, and how the deployment runs."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="")
    docs_title: ClassVar[str] = "Shared: lake, warehouse, limits, executor, alerts"

    lake_root: Annotated[str, BeforeValidator(_lake_root)] = Field(
        "data/lake", description="root of the landing copies and the Parquet lake: a local "
        "folder, or `s3://bucket/prefix`")
    lake_scratch: str | None = Field(None, description="local disk for work in progress "
                                     "(downloads, staging) when the lake is on object storage; "
                                     "default: the system's temporary folder")
    warehouse_path: str = Field("data/warehouse.duckdb", description="the DuckDB file (when "
                                "`WAREHOUSE_CATALOG` is unset)")
    warehouse_catalog: SecretStr | None = Field(None, description=(
        "a DuckLake catalog instead of the DuckDB file: `postgres:dbname=… host=… user=… "
        "password=…`, `sqlite:PATH` or `PATH.ducklake` (docs/scaling.md); it may hold a "
        "password"))
    warehouse_data_path: str | None = Field(None, description="where DuckLake writes the files "
                                            "it makes itself; default `LAKE_ROOT/ducklake`")
    warehouse_lock_timeout_seconds: Annotated[int, whole(0, 3600)] = Field(
        300, description="how long a load waits for another process's lock on the warehouse")
    limits_path: str | None = Field(None, description="the client-side rate limiter's state, "
                                    "shared by every run on the machine; default "
                                    "`.limits.sqlite` beside the warehouse")
    limits_dsn: SecretStr | None = Field(None, description=(
        "the limiter's state in PostgreSQL (libpq keywords) instead of `LIMITS_PATH`, so "
        "rate limits hold across machines"))
    pool_wait_seconds: Seconds = Field(
        300.0, description="how long a step waits for a Dagster pool slot before failing, "
        "naming the runs that hold it")
    dagster_executor: Annotated[str, choice("in_process", "dask")] = Field(
        "in_process", description="`dask` runs steps on the Dask cluster at "
        "`DASK_SCHEDULER_ADDRESS` (docs/scaling.md)")
    dask_scheduler_address: str | None = Field(None, description="the Dask scheduler, "
                                               "`tcp://host:port`, with `DAGSTER_EXECUTOR=dask`")
    alert_webhook_url: SecretStr | None = Field(None, description=(
        "a Slack-compatible webhook for failed runs and checks (docs/alerts.md)"))
    dagster_ui_url: str | None = Field(None, description="the Dagster UI's address, for links "
                                       "to runs in alerts")
    aws_access_key_id: SecretStr | None = Field(None, description=(
        "an `s3://` lake's key; on a DuckLake catalog the analysts' models read the lake's "
        "files with it too (dbt gets the secret as `DBT_ENV_SECRET_*`, which it keeps out of "
        "its logs), so such a deployment needs keys rather than an instance role"))
    aws_secret_access_key: SecretStr | None = Field(None, description="an `s3://` lake's secret")
    aws_session_token: SecretStr | None = Field(None, description="an `s3://` lake's session "
                                                "token, for temporary credentials")
    aws_region: str | None = Field(None, description="an `s3://` lake's region; default "
                                   "`AWS_DEFAULT_REGION`, else `us-east-1`")
    aws_default_region: str | None = Field(None, description="the region, as the AWS tools "
                                           "name it")
    aws_endpoint_url: str | None = Field(None, description="an S3-compatible server's address "
                                         "(SeaweedFS, MinIO, GCS's XML API)")
    aws_endpoint_url_s3: str | None = Field(None, description="the same for S3 alone; wins "
                                            "over `AWS_ENDPOINT_URL`")

    @property
    def warehouse_data(self) -> str:
        return self.warehouse_data_path or self.lake_root.rstrip("/") + "/ducklake"

    @property
    def limits_file(self) -> str:
        if self.limits_path:
            return self.limits_path
        return os.path.join(os.path.dirname(self.warehouse_path) or ".", ".limits.sqlite")


class InstanceSettings(EnvSettings):
    """Read by Dagster itself from ``deploy/dagster.yaml`` (the production instance)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="DAGSTER_PG_")
    docs_title: ClassVar[str] = "The production Dagster instance (deploy/dagster.yaml)"

    host: str | None = Field(None, description="PostgreSQL host of run, event and schedule "
                             "storage")
    port: str = Field("5432", description="its port")
    user: str | None = Field(None, description="its user")
    password: SecretStr | None = Field(None, description="its password")
    db: str | None = Field(None, description="its database")


# ---- docs/configuration.md ------------------------------------------------------------------

def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"`{value:%Y-%m-%dT%H}`"
    return f"`{value}`"


def table(model: type[BaseModel], *, prefix: str | None = None) -> Iterator[str]:
    """Markdown rows: variable (or YAML key with ``prefix=''``), default, meaning."""
    for name, field in model.model_fields.items():
        shown = name if prefix == "" else variable(model, name)
        secret = " (a secret)" if is_secret(field) else ""
        yield (f"| `{shown}` | {_default(field)} | {(field.description or '').strip()}"
               f"{secret} |")

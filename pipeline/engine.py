"""DuckDB's extension settings, in one place: extensions come from pip packages, never the network.

Each `duckdb-extension-<name>` package pins the DuckDB it was built for, so pip keeps extensions
and engine in step. A run-time download would tie a run to the internet and to whatever build is
served that day, so every connection is hardened and loads extensions from the packages only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
from duckdb import DuckDBPyConnection as Connection

from pipeline import sql

EXTENSIONS: tuple[str, ...] = ("ducklake", "httpfs", "postgres", "sqlite")
"""The extensions the project uses; each is the pip package `duckdb-extension-<name>`."""

# A repository may be a local folder: one that cannot exist turns `INSTALL <name>` (from the
# default or "core" repository) into an instant local error instead of a download.
NO_REPOSITORY = "/nonexistent/duckdb-extensions-come-from-pip-packages"
Config = dict[str, str | bool | int | float | list[str]]  # what duckdb.connect(config=) takes
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class ExtensionUnavailable(RuntimeError):
    """The extension's pip package is missing, or has no build for the running DuckDB."""


def extension_directory() -> Path:
    """Per virtualenv, beside the packages the copies come from; DuckDB's default,
    ~/.duckdb/extensions, is shared with analysts' CLIs and whatever they downloaded."""
    return Path(sys.prefix) / "duckdb_extensions"


def offline_config(directory: Path | None = None) -> Config:
    """Connect options (merge them in last): without them a bare `ATTACH 'ducklake:…'` or an
    `s3://` path installs the extension from the internet. Only an explicit `INSTALL x FROM
    <url or community>` still downloads; no setting short of enable_external_access=false stops it.
    """
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,  # once off, it cannot be switched on again
        "custom_extension_repository": NO_REPOSITORY,
        "autoinstall_extension_repository": NO_REPOSITORY,
        "extension_directory": str(directory or extension_directory()),
    }


def harden(con: Connection, directory: Path | None = None) -> Connection:
    """`offline_config` for a connection opened elsewhere; SET GLOBAL, so its cursors share it."""
    for name, value in offline_config(directory).items():
        text = sql.literal(value) if isinstance(value, str) else str(value).lower()
        con.execute(f"SET GLOBAL {name} = {text}")
    return con


def package_file(name: str, version: str) -> Path:
    """The build of `name` for DuckDB `version` (e.g. "v1.5.5") inside its pip package."""
    package = f"duckdb-extension-{name}"
    wanted = f"{package}=={version.removeprefix('v')}"
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionUnavailable(
            f"DuckDB extension {name!r} is not installed: add the pip package {wanted} "
            "(extensions are never downloaded at run time)")
    builds = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    found = builds / version / f"{name}.duckdb_extension"
    if not found.is_file():
        have = sorted(p.name for p in builds.iterdir()) if builds.is_dir() else []
        raise ExtensionUnavailable(
            f"{package} {importlib.metadata.version(package)} has builds for DuckDB "
            f"{', '.join(have) or 'no version'}, but this DuckDB is {version}: install {wanted}, "
            "or pin duckdb to a version the package was built for")
    return found


def load_extension(con: Connection, name: str) -> None:
    """Load `name` from its pip package into `con`'s database; call on a hardened connection.

    `LOAD '<package file>'` fails for postgres and sqlite: DuckDB derives the entry point from
    the file name (`postgres_duckdb_cpp_init`). So it is INSTALLed (which resolves the alias to
    postgres_scanner) into the extension directory, once per package file, and loaded by name.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"not an extension name: {name!r}")
    version = str(con.execute("SELECT library_version FROM pragma_version()").fetchall()[0][0])
    source = package_file(name, version)
    state = con.execute(
        "SELECT loaded, installed, install_path, installed_from FROM duckdb_extensions() "
        "WHERE extension_name = $1 OR list_contains(aliases, $1)", [name]).fetchone()
    if state is not None and state[0]:
        return
    copy = Path(state[2]) if state is not None and state[1] else None
    if not (copy and copy.is_file() and state and state[3] == str(source)
            and copy.stat().st_size == source.stat().st_size):
        con.execute(f"FORCE INSTALL {sql.literal(str(source))}")
    con.execute(f"LOAD {name}")


def connect(database: str = ":memory:", *, read_only: bool = False, config: Config | None = None,
            extensions: tuple[str, ...] = (), directory: Path | None = None) -> Connection:
    """`duckdb.connect` with `offline_config` applied and `extensions` loaded from packages."""
    con = duckdb.connect(database, read_only=read_only,
                         config={**(config or {}), **offline_config(directory)})
    try:
        for name in extensions:
            load_extension(con, name)
    except BaseException:
        con.close()
        raise
    return con



@dataclass(frozen=True)
class EngineLimits:
    """What one engine doing a source's heavy work (normalize, cohort files) may take."""

    threads: int = 2
    memory_limit: str = "384MB"


def work_engine(limits: EngineLimits, spill: Path) -> Connection:
    """An in-memory engine for file-to-file work, in UTC; ``spill`` is where it may page out
    (it would use ``./.tmp``). Insertion order is not kept: it costs memory and no file here
    depends on it."""
    con = connect(config={"threads": limits.threads, "memory_limit": limits.memory_limit,
                          "preserve_insertion_order": False, "temp_directory": str(spill)})
    con.execute("SET TimeZone = 'UTC'")  # ICU loads lazily; as a connect option it fails
    return con

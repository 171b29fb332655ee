"""Extensions come from the installed pip packages; no statement makes DuckDB download one.

DuckDB's extension repositories are pointed at a local HTTP recorder that answers 404 to
everything, so a download attempt shows up as a recorded request (and fails) instead of
reaching the internet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from pipeline import engine, sql

# What each extension is called once loaded (postgres and sqlite load under their old names).
LOADED_AS = {"ducklake": "ducklake", "httpfs": "httpfs", "postgres": "postgres_scanner",
             "sqlite": "sqlite_scanner"}
FAST = 2.0  # seconds: a refusal is local; a download attempt or a hang would take longer


@dataclass
class Recorder:
    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_error(404)

        do_HEAD = do_POST = do_PUT = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Recorder(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """An extension directory holding a copy of every extension (copying them takes ~1.5 s)."""
    directory = tmp_path_factory.mktemp("installed")
    engine.connect(extensions=engine.EXTENSIONS, directory=directory).close()
    return directory


def point_repositories_at(con: duckdb.DuckDBPyConnection, url: str) -> None:
    for setting in ("custom_extension_repository", "autoinstall_extension_repository"):
        con.execute(f"SET GLOBAL {setting} = {sql.literal(url)}")


def hardened(directory: Path, recorder: Recorder) -> duckdb.DuckDBPyConnection:
    con = engine.harden(duckdb.connect(), directory)
    point_repositories_at(con, recorder.url)
    return con


def use_every_extension(con: duckdb.DuckDBPyConnection, tmp: Path) -> None:
    """Something from each extension that works only once it is loaded, and needs no network."""
    con.execute(f"ATTACH {sql.literal(f'ducklake:{tmp}/meta.ducklake')} AS lake "
                f"(DATA_PATH {sql.literal(str(tmp / 'lake_files'))})")
    con.execute("CREATE OR REPLACE TABLE lake.t AS SELECT 42 AS x")
    assert con.execute("SELECT x FROM lake.t").fetchall() == [(42,)]
    con.execute(f"ATTACH {sql.literal(str(tmp / 'db.sqlite'))} AS lite (TYPE sqlite)")
    con.execute("CREATE OR REPLACE TABLE lite.t AS SELECT 'ok' AS y")
    assert con.execute("SELECT y FROM lite.t").fetchall() == [("ok",)]
    con.execute("CREATE OR REPLACE SECRET s3 (TYPE s3, KEY_ID 'k', SECRET 's')")  # httpfs
    con.execute("CREATE OR REPLACE SECRET pg (TYPE postgres, HOST '127.0.0.1')")  # postgres
    for db in ("lake", "lite"):
        con.execute(f"DETACH {db}")


def test_every_extension_loads_from_its_package_without_a_request(recorder, tmp_path):
    directory = tmp_path / "extensions"
    for attempt in ("first: installs the copies", "second: reuses them"):
        con = hardened(directory, recorder)
        for name in engine.EXTENSIONS:
            engine.load_extension(con, name)
        state = {row[0]: row[1:] for row in con.execute(
            "SELECT extension_name, loaded, install_path, installed_from FROM duckdb_extensions()"
        ).fetchall()}
        for name in engine.EXTENSIONS:
            loaded, path, source = state[LOADED_AS[name]]
            assert loaded, (attempt, name)
            assert Path(path).is_relative_to(directory), (attempt, name, path)
            assert source == str(engine.package_file(name, f"v{duckdb.__version__}")), source
        use_every_extension(con, tmp_path)
        con.close()
    assert recorder.requests == []


def test_connect_loads_extensions_and_keeps_autoinstall_off(installed, tmp_path):
    con = engine.connect(extensions=engine.EXTENSIONS, directory=installed)
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('autoinstall_known_extensions', "
        "'autoload_known_extensions', 'allow_community_extensions')").fetchall())
    assert settings == dict.fromkeys(settings, "false") and len(settings) == 3
    use_every_extension(con, tmp_path)
    con.close()


PATHS = ["SELECT * FROM read_csv('s3://x/y.csv')",
         "SELECT * FROM read_parquet('https://example.com/x.parquet')"]
ATTACHES = ["ATTACH 'ducklake:{tmp}/meta.ducklake' AS lake",
            "ATTACH '{tmp}/db.sqlite' AS lite (TYPE sqlite)",
            "ATTACH 'host=127.0.0.1 port=1 connect_timeout=1' AS pg (TYPE postgres)"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("statement", PATHS + ATTACHES)
def test_an_unloaded_extensions_feature_fails_fast_without_a_request(
        recorder, tmp_path, statement):
    con = hardened(tmp_path / "extensions", recorder)  # a fresh database, nothing installed
    started = time.monotonic()
    with pytest.raises(duckdb.Error, match=r"(?i)extension"):
        con.execute(statement.format(tmp=tmp_path))
    assert time.monotonic() - started < FAST
    assert recorder.requests == []
    con.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("statement", PATHS + ATTACHES)
def test_with_copies_installed_only_attach_loads_one_and_only_the_projects_own(
        recorder, installed, tmp_path, statement):
    """Measured on 1.5.5: `ATTACH ... (TYPE x)` loads an *installed* x even with autoload off.
    That is why offline_config sets extension_directory: the only copies there are the packages'."""
    directory = installed
    con = hardened(directory, recorder)  # a fresh database: installed, nothing loaded
    started = time.monotonic()
    try:
        con.execute(statement.format(tmp=tmp_path))
    except duckdb.Error as error:  # Postgres: nobody listens on port 1
        assert (statement in PATHS and "extension" in str(error)) or "Postgres" in str(error), error
    else:
        assert statement in ATTACHES
    assert time.monotonic() - started < FAST
    assert recorder.requests == []
    paths = [row[0] for row in con.execute(
        "SELECT install_path FROM duckdb_extensions() "
        "WHERE loaded AND install_mode <> 'STATICALLY_LINKED'").fetchall()]
    assert len(paths) == (statement in ATTACHES), paths
    assert all(Path(p).is_relative_to(directory) for p in paths), paths
    con.close()


def test_the_recorder_would_see_a_download(recorder, tmp_path):
    """The control: with DuckDB's defaults the same statement asks the repository for httpfs."""
    con = duckdb.connect(config={"extension_directory": str(tmp_path)})
    point_repositories_at(con, recorder.url)
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM read_csv('s3://x/y.csv')")
    assert any("/httpfs.duckdb_extension" in r for r in recorder.requests), recorder.requests


def test_install_by_name_finds_no_repository(tmp_path):
    con = engine.connect(directory=tmp_path)
    started = time.monotonic()
    with pytest.raises(duckdb.IOException, match=engine.NO_REPOSITORY):
        con.execute("INSTALL httpfs")
    assert time.monotonic() - started < FAST


def test_a_missing_package_names_the_pip_package_to_install(recorder, tmp_path):
    con = hardened(tmp_path, recorder)
    with pytest.raises(engine.ExtensionUnavailable,
                       match=rf"pip package duckdb-extension-spatial=={duckdb.__version__}"):
        engine.load_extension(con, "spatial")
    assert recorder.requests == []


def test_a_package_without_a_build_for_this_duckdb_names_both_versions():
    version = f"v{duckdb.__version__}"
    with pytest.raises(engine.ExtensionUnavailable) as raised:
        engine.package_file("httpfs", "v9.9.9")
    message = str(raised.value)
    assert version in message and "v9.9.9" in message, message
    assert "duckdb-extension-httpfs==9.9.9" in message, message

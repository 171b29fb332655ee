"""A private PostgreSQL cluster (initdb + pg_ctl) on 127.0.0.1, on a free port, in a temp folder.

Private rather than the system's ``main`` cluster: nothing to start or stop outside the test,
no shared state between two test processes, and password auth on 127.0.0.1 as in production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.servers import free_ports, tail, unavailable, watchdog

READY_SECONDS = 30
RUN_AS = "postgres"  # postgres refuses to run as root


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with initdb, else pg_ctl's folder on PATH."""
    majors = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                    else 0)
    if majors:
        return majors[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    unavailable("PostgreSQL's initdb is missing: apt-get install postgresql (15 is on the image)")


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        unavailable(f"running as root, and there is no {RUN_AS!r} OS user to run postgres as "
                    "(useradd --system postgres, as scripts/test_parts.sh does)")
    runuser = shutil.which("runuser")
    if runuser is None:
        unavailable("running as root without runuser (util-linux) to start postgres as "
                    f"{RUN_AS!r}")
    return [runuser, "-u", RUN_AS, "--"]


def keywords(**params: object) -> str:
    """A libpq keyword/value string, values quoted as libpq wants."""
    def value(v: object) -> str:
        text = str(v)
        if text and all(c.isalnum() or c in "._-/" for c in text):
            return text
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{k}={value(v)}" for k, v in params.items())


@dataclass(frozen=True)
class PostgresDatabase:
    """One database, owned by the server's test user, reached over TCP with its password."""

    server: PostgresServer
    name: str

    @property
    def dsn(self) -> str:
        s = self.server
        return keywords(dbname=self.name, host=s.host, port=s.port, user=s.user,
                        password=s.password)

    @property
    def url(self) -> str:
        s = self.server
        return (f"postgresql+psycopg2://{quote(s.user)}:{quote(s.password, safe='')}@"
                f"{s.host}:{s.port}/{quote(self.name)}")

    def env(self, prefix: str = "DAGSTER_PG_") -> dict[str, str]:
        """As deploy/dagster.yaml reads them."""
        s = self.server
        return {f"{prefix}HOST": s.host, f"{prefix}PORT": str(s.port), f"{prefix}USER": s.user,
                f"{prefix}PASSWORD": s.password, f"{prefix}DB": self.name}

    def __str__(self) -> str:
        return self.dsn


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    socket_dir: Path
    _count: int = field(default=0, repr=False)

    def admin(self) -> Any:
        """The superuser over the cluster's own socket (trust there, passwords on TCP)."""
        import psycopg2

        con = psycopg2.connect(host=str(self.socket_dir), port=self.port, user=RUN_AS,
                               dbname="postgres")
        con.autocommit = True
        return con

    def create_database(self, name: str | None = None) -> PostgresDatabase:
        """A fresh, empty database owned by the test user (one per Dagster instance, catalog...)."""
        from psycopg2 import sql

        self._count += 1
        name = name or f"db{self._count}_{secrets.token_hex(3)}"
        with contextlib.closing(self.admin()) as con, con.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(self.user)))
        return PostgresDatabase(self, name)


@contextlib.contextmanager
def run_postgres() -> Iterator[PostgresServer]:
    binaries = postgres_bin()
    as_user = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    try:
        data, log = root / "data", root / "postgres.log"
        superuser_pw = root / "superuser-password"
        superuser_pw.write_text(secrets.token_urlsafe(18) + "\n")
        if as_user:
            shutil.chown(root, RUN_AS, RUN_AS)
            shutil.chown(superuser_pw, RUN_AS, RUN_AS)
        root.chmod(0o700)
        initdb = subprocess.run(
            [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", RUN_AS,
             f"--pwfile={superuser_pw}", "--auth-local=trust", "--auth-host=scram-sha-256",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, check=False)
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
        (port,) = free_ports(1)
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off "
                   "-c unix_socket_permissions=0700 -c max_connections=200")
        start = subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
             "-w", "-t", str(READY_SECONDS), "start"],
            capture_output=True, text=True, timeout=READY_SECONDS + 30, check=False,
            start_new_session=True)
        if start.returncode != 0:
            pytest.fail(f"pg_ctl start failed ({start.returncode}):\n{start.stdout}\n"
                        f"{start.stderr}\n{tail(log)}")
        stop = [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t",
                "30", "stop"]
        with contextlib.ExitStack() as guard:
            guard.callback(subprocess.run, stop, capture_output=True, timeout=60, check=False)
            guard.enter_context(watchdog(["sh", "-c", '"$@"; rm -rf "$0"', str(root), *stop]))
            server = PostgresServer("127.0.0.1", port, f"test_{secrets.token_hex(3)}",
                                    secrets.token_urlsafe(18), root)
            from psycopg2 import sql

            with contextlib.closing(server.admin()) as con, con.cursor() as cur:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD %s").format(
                    sql.Identifier(server.user)), (server.password,))
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster per test process (about 2 s to create); tests get databases of their own."""
    with run_postgres() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> PostgresDatabase:
    """A fresh database: ``.dsn`` (libpq keywords), ``.url`` (SQLAlchemy, psycopg2),
    ``.server.create_database()`` for more (a Dagster instance's, a DuckLake catalog's)."""
    return postgres_server.create_database()

"""Each test server is real: S3 checks keys, PostgreSQL checks passwords, Dask runs on both
workers, and every listener is on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import uuid

import psutil
import pytest

from tests.servers.dask import DaskCluster
from tests.servers.postgres import PostgresDatabase, keywords
from tests.servers.seaweed import SeaweedS3


def listeners(pid: int) -> set[tuple[str, int]]:
    """Every TCP address the process and its children listen on."""
    found: set[tuple[str, int]] = set()
    try:  # backends come and go while we look
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return found
    for proc in family:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
    return found


def pids_of(name: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == name or (p.info["cmdline"] or [""])[0].endswith(f"/{name}")]


def test_seaweed_s3_writes_reads_and_refuses_a_wrong_key(seaweed_s3: SeaweedS3) -> None:
    """The fixture (tests/servers/seaweed.py) starts ``weed mini`` with -ip.bind=127.0.0.1 and
    -master.telemetry=false; this proves no listener of it is elsewhere."""
    from pyarrow import fs

    path = f"{seaweed_s3.bucket}/{uuid.uuid4().hex}/hello.txt"
    s3 = seaweed_s3.filesystem()
    with s3.open_output_stream(path) as out:
        out.write(b"hello, lake")
    with s3.open_input_stream(path) as stream:
        assert stream.read() == b"hello, lake"
    wrong = [(seaweed_s3.key_id, "not-the-secret"), ("NOSUCHKEY", seaweed_s3.secret)]
    for key_id, secret in wrong:
        with pytest.raises(OSError, match=r"ACCESS_DENIED|InvalidAccessKeyId|403"):
            seaweed_s3.filesystem(key_id, secret).get_file_info(path)
    assert s3.get_file_info(path).type == fs.FileType.File
    env = seaweed_s3.env()
    assert env["AWS_ENDPOINT_URL"] == seaweed_s3.endpoint_url.rstrip("/")
    assert env["AWS_REGION"] == "us-east-1" and env["AWS_ACCESS_KEY_ID"] == seaweed_s3.key_id
    weeds = [pid for pid in pids_of("weed")
             if any(port == int(seaweed_s3.host_port.split(":")[1])
                    for _, port in listeners(pid))]
    assert weeds, "the weed process serving this endpoint was not found"
    addresses = listeners(weeds[0])
    assert addresses and {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses


def test_postgres_accepts_the_password_and_refuses_a_wrong_one(
        postgres_dsn: PostgresDatabase) -> None:
    import psycopg2
    import sqlalchemy

    with contextlib.closing(psycopg2.connect(postgres_dsn.dsn)) as con, con.cursor() as cur:
        cur.execute("SELECT current_database(), current_user, inet_server_addr()::text")
        db, user, addr = cur.fetchone()
    assert (db, user, addr) == (postgres_dsn.name, postgres_dsn.server.user, "127.0.0.1/32")
    engine = sqlalchemy.create_engine(postgres_dsn.url)
    with engine.connect() as con:
        assert con.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    engine.dispose()
    s = postgres_dsn.server
    wrong = keywords(dbname=postgres_dsn.name, host=s.host, port=s.port, user=s.user,
                     password="wrong-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong)
    other = s.create_database()
    assert other.name != postgres_dsn.name
    with contextlib.closing(psycopg2.connect(other.dsn)) as con, con.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone() == (other.name,)
    postmasters = [pid for pid in pids_of("postgres")
                   if (s.host, s.port) in listeners(pid)]
    assert postmasters and {ip for ip, _ in listeners(postmasters[0])} == {"127.0.0.1"}


def _where_and_what() -> tuple[int, str | None]:
    return os.getpid(), os.environ.get("SERVER_TEST_MARK")


def test_dask_runs_a_function_on_both_named_workers(dask_cluster) -> None:
    cluster: DaskCluster = dask_cluster(env={"SERVER_TEST_MARK": "from-the-test"})
    assert cluster.address.startswith("tcp://127.0.0.1:")
    pids = cluster.worker_pids()
    assert sorted(pids) == ["w1", "w2"] and len(set(pids.values())) == 2
    with cluster.client() as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        by_name = {info["name"]: addr for addr, info in workers.items()}
        results = {name: client.submit(_where_and_what, workers=[addr], pure=False).result()
                   for name, addr in by_name.items()}
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
    assert results == {name: (pid, "from-the-test") for name, pid in pids.items()}
    addresses = set().union(*(listeners(pid) for pid in cluster.pids))
    assert addresses and {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses

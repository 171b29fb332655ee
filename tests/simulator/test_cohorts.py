"""The simulated Behavioral Cohorts API over real HTTP: the list, the 202 -> polling -> file ->
302 -> storage flow, the storage host's refusals and expired links, and the gzip CSV."""

from __future__ import annotations

import csv
import gzip
import io
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from simulator import Cohort, Simulator, SimulatorConfig, members

AUTH = ("sim-api-key", "sim-secret-key")
SMALL = "n3wsl7r"  # 60 members in the default cohorts
TIMES = ("lastComputed", "lastMod", "createdAt")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig()) as simulator:
        yield simulator


@pytest.fixture
def api(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as http:
        yield http
    assert sim.errors == []


def download(
    http: httpx.Client, cohort_id: str, polls: int = 10, **params: object
) -> tuple[str, httpx.Response]:
    """Request, poll until completed, and ask for the file (not following the redirect)."""
    response = http.get(f"/api/5/cohorts/request/{cohort_id}", params=params)
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    for _ in range(polls):
        status = http.get(f"/api/5/cohorts/request-status/{request_id}")
        if status.json()["async_status"] == "JOB COMPLETED":
            assert status.status_code == 200
            break
        assert status.status_code == 202
    return request_id, http.get(f"/api/5/cohorts/request/{request_id}/file")


def rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(gzip.decompress(body).decode())))


def stored(url: str) -> bytes:
    """The bytes the storage host sends (still gzip: httpx would decode Content-Encoding)."""
    with httpx.stream("GET", url) as response:
        assert response.status_code == 200, response.read()
        return b"".join(response.iter_raw())


# -- the list ---------------------------------------------------------------------------------


def test_list_has_every_field_typed_as_amplitude_sends_it(sim: Simulator, api: httpx.Client):
    response = api.get("/api/3/cohorts")
    assert response.status_code == 200
    cohorts = response.json()["cohorts"]
    assert [c["id"] for c in cohorts] == [c.id for c in sim.config.cohorts]
    documented = {"appId", "id", "name", "description", "archived", "finished", "published",
                  "hidden", "is_predictive", "is_official_content", "definition", "owners",
                  "viewers", "size", "type", "lastMod", "createdAt", "lastComputed", "metadata",
                  "view_count", "popularity", "last_viewed", "chart_id", "edit_id",
                  "location_id", "shortcut_ids"}  # fmt: skip
    for cohort in cohorts:
        assert documented <= set(cohort)
        assert set(cohort) - documented  # fields the docs do not list
        assert "syncMetadata" not in cohort
        assert isinstance(cohort["id"], str) and isinstance(cohort["size"], int)
        assert all(isinstance(cohort[k], int) and 1e9 < cohort[k] < 2e9 for k in TIMES)
        assert isinstance(cohort["owners"], list) and isinstance(cohort["viewers"], list)
        assert isinstance(cohort["definition"], dict)
    assert [c["archived"] for c in cohorts].count(True) == 1
    assert {c["size"] for c in cohorts} >= {0, 60}
    synced = api.get("/api/3/cohorts", params={"includeSyncInfo": "true"}).json()["cohorts"]
    assert all(isinstance(c["syncMetadata"], list) for c in synced)


def test_recompute_advances_last_computed_and_changes_members(sim: Simulator, api: httpx.Client):
    def listed() -> int:
        cohorts = api.get("/api/3/cohorts").json()["cohorts"]
        return next(c["lastComputed"] for c in cohorts if c["id"] == SMALL)

    before = listed()
    members_before = list(sim.cohort_csv(SMALL))
    assert sim.last_computed(SMALL) == before
    after = sim.recompute_cohort(SMALL)
    assert after > before and listed() == after == sim.last_computed(SMALL)
    members_after = list(sim.cohort_csv(SMALL))
    assert len(members_after) == len(members_before) and members_after != members_before
    assert sim.recompute_cohort(SMALL, at=after + 86_400) == after + 86_400 == listed()
    with pytest.raises(KeyError):
        sim.recompute_cohort("nope")


# -- the download -----------------------------------------------------------------------------


def test_request_polls_then_302_to_storage_which_serves_the_gzip_csv(
    sim: Simulator, api: httpx.Client
):
    request_id, response = download(api, SMALL)
    statuses = [
        (r.status, r.path.rsplit("/", 1)[-1]) for r in sim.requests if "request-status" in r.path
    ]
    assert [s for s, _ in statuses[-3:]] == [202, 202, 200]  # two polls in progress by default
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(sim.storage_url + "/") and sim.storage_url != sim.url
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=60" in location
    stored = httpx.get(location)  # no credentials: a pre-signed link
    assert stored.status_code == 200
    assert stored.headers["content-encoding"] == "gzip"
    with httpx.stream("GET", location) as raw:  # again: links work until they expire
        body = b"".join(raw.iter_raw())  # the bytes as sent, still gzip
    assert body[:2] == b"\x1f\x8b"
    table = rows(body)
    assert table[0] == ["amplitude_id", "user_id"]
    assert len(table) == 61 and all(len(r) == 2 and r[0].isdigit() for r in table[1:])
    assert len({r[0] for r in table[1:]}) == 60
    assert gzip.decompress(body) == b"".join(sim.cohort_csv(SMALL))
    assert gzip.decompress(body).startswith(b'"amplitude_id","user_id"\n"')
    assert request_id in location


def test_members_are_the_generators_users_with_their_properties(sim: Simulator, api: httpx.Client):
    keys = ["country", "gp:plan", "platform", "gp:cohorts", "missing_prop"]
    _, response = download(api, SMALL, props=1, propKeys=keys)
    table = rows(stored(response.headers["location"]))
    assert table[0] == ["amplitude_id", "user_id", *keys]
    project, seed = sim.config.project_id, sim.config.seed
    by_id = {
        str(f["amplitude_id"]): f
        for f in (members.user_fields(project, seed, n) for n in range(members.USERS))
    }
    for row in table[1:]:
        fields = by_id[row[0]]
        assert row[1] == (fields["user_id"] or "")
        assert row[2] == (fields["country"] or "")
        assert row[3] == fields["user_properties"]["plan"]
        assert row[6] == ""
    everything = rows(stored(download(api, SMALL, props=1)[1].headers["location"]))
    assert everything[0][2:] == list(members.ALL_PROPS)


def test_storage_refuses_authorization_and_bad_signatures(sim: Simulator, api: httpx.Client):
    _, response = download(api, SMALL)
    location = response.headers["location"]
    refused = httpx.get(location, auth=AUTH)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/xml"
    assert "<Code>AccessDenied</Code>" in refused.text and "Authorization" in refused.text
    tampered = location.replace("X-Amz-Expires=60", "X-Amz-Expires=9999")
    assert "<Code>SignatureDoesNotMatch</Code>" in httpx.get(tampered).text
    assert httpx.get(sim.storage_url + "/amplitude-cohort-downloads/x.csv.gz").status_code == 403
    assert httpx.get(location).status_code == 200
    # httpx, following the 302 itself, drops the credentials on the other origin
    _, response = download(api, SMALL)
    request_id = response.headers["location"].split("/")[-1].split(".")[0]
    redirected = api.get(f"/api/5/cohorts/request/{request_id}/file", follow_redirects=True)
    assert redirected.status_code == 200 and redirected.history[0].status_code == 302
    assert redirected.text.startswith('"amplitude_id","user_id"\n')  # httpx decoded the gzip


def test_file_before_completion_is_400_and_unknown_ids_are_404(api: httpx.Client):
    request_id = api.get(f"/api/5/cohorts/request/{SMALL}").json()["request_id"]
    assert api.get(f"/api/5/cohorts/request/{request_id}/file").status_code == 400
    assert api.get("/api/5/cohorts/request/nosuchcohort").status_code == 404
    assert api.get("/api/5/cohorts/request-status/0123abcd").status_code == 404
    assert api.get("/api/5/cohorts/request/0123abcd/file").status_code == 404


def test_archived_and_empty_cohorts_download(sim: Simulator, api: httpx.Client):
    archived = next(c for c in sim.config.cohorts if c.archived)
    _, response = download(api, archived.id)
    assert len(rows(stored(response.headers["location"]))) == archived.size + 1
    _, response = download(api, "e0mpty1")
    assert rows(stored(response.headers["location"])) == [["amplitude_id", "user_id"]]


@pytest.mark.parametrize("auth", [None, ("wrong", "sim-secret-key")])
@pytest.mark.parametrize(
    "path",
    ["/api/3/cohorts", f"/api/5/cohorts/request/{SMALL}", "/api/5/cohorts/request-status/x",
     "/api/5/cohorts/request/x/file"],
)  # fmt: skip
def test_cohort_endpoints_need_the_projects_credentials(sim: Simulator, path, auth):
    response = httpx.get(sim.url + path, auth=auth)
    assert response.status_code == (401 if auth is None else 403)


# -- modes ------------------------------------------------------------------------------------


def serve(**changes: object) -> Simulator:
    return Simulator(replace(SimulatorConfig(), **changes))


def test_links_already_expired_answer_as_s3_and_a_fresh_file_call_does_not_help():
    with serve(storage_link_ttl_seconds=0) as sim, httpx.Client(base_url=sim.url, auth=AUTH) as api:
        request_id, response = download(api, SMALL)
        for _ in range(2):
            expired = httpx.get(response.headers["location"])
            assert expired.status_code == 403
            assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.text
            assert "<X-Amz-Expires>0</X-Amz-Expires>" in expired.text
            response = api.get(f"/api/5/cohorts/request/{request_id}/file")


def test_links_expire_after_first_use_or_after_their_ttl():
    with (
        serve(storage_link_single_use=True) as sim,
        httpx.Client(base_url=sim.url, auth=AUTH) as api,
    ):
        request_id, response = download(api, SMALL)
        assert httpx.get(response.headers["location"]).status_code == 200
        assert "Request has expired" in httpx.get(response.headers["location"]).text
        fresh = api.get(f"/api/5/cohorts/request/{request_id}/file").headers["location"]
        assert httpx.get(fresh).status_code == 200
    with (
        serve(storage_link_ttl_seconds=0.3) as sim,
        httpx.Client(base_url=sim.url, auth=AUTH) as api,
    ):
        _, response = download(api, SMALL)
        assert httpx.get(response.headers["location"]).status_code == 200
        time.sleep(0.35)
        assert "Request has expired" in httpx.get(response.headers["location"]).text


def test_polls_are_configurable_and_a_job_can_never_complete():
    with (
        serve(cohort_polls_before_complete=0) as sim,
        httpx.Client(base_url=sim.url, auth=AUTH) as api,
    ):
        request_id = api.get(f"/api/5/cohorts/request/{SMALL}").json()["request_id"]
        assert api.get(f"/api/5/cohorts/request-status/{request_id}").status_code == 200
    with (
        serve(cohort_jobs_never_complete=True) as sim,
        httpx.Client(base_url=sim.url, auth=AUTH) as api,
    ):
        request_id = api.get(f"/api/5/cohorts/request/{SMALL}").json()["request_id"]
        for _ in range(6):
            status = api.get(f"/api/5/cohorts/request-status/{request_id}")
            assert (status.status_code, status.json()["async_status"]) == (202, "JOB INPROGRESS")
        assert api.get(f"/api/5/cohorts/request/{request_id}/file").status_code == 400


def test_small_cohorts_inline_and_gzip_without_content_encoding():
    config = {"cohort_inline_max_members": 100, "cohort_content_encoding": False}
    with serve(**config) as sim, httpx.Client(base_url=sim.url, auth=AUTH) as api:
        _, response = download(api, SMALL)
        assert response.status_code == 200 and "content-encoding" not in response.headers
        assert response.headers["content-type"] == "application/gzip"
        assert response.content[:2] == b"\x1f\x8b" and len(rows(response.content)) == 61
        _, big = download(api, "k3x9qpl")  # 1,200 members: redirected
        assert big.status_code == 302


def test_configured_cohorts_and_sizes_beyond_the_generated_users():
    cohorts = (Cohort("b1g0001", "Everyone and more", members.USERS + 500),)
    with serve(cohorts=cohorts) as sim, httpx.Client(base_url=sim.url, auth=AUTH) as api:
        assert [c["size"] for c in api.get("/api/3/cohorts").json()["cohorts"]] == [20_500]
        _, response = download(api, "b1g0001")
        table = rows(stored(response.headers["location"]))
        assert len(table) == 20_501 and len({r[0] for r in table[1:]}) == 20_500
        assert all(len(r[0]) == 13 for r in table[1:])

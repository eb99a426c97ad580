"""Every route of the compatibility plugin, through the real API server: who may call it, what bad requests get,
and 100 concurrent ``POST /sync``.

The routes are discovered from the plugin itself (``ImrtCompatPlugin.fastapi_apps``), so a route added later
without authentication fails here. "Nothing changed" is checked against the DAG's runs (REST API) and a digest of
every row of every table of the imrt database.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import PluginRoute, plugin_class, plugin_routes, wait_until
from stack_fixtures import RealStack

from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

GROUP = "iat-requests"
TOKEN = "glpat-plugin-requests-token"
HOOK_SECRET = "plugin-requests-hook-secret"
HOOK_HEADERS = {"X-Gitlab-Token": HOOK_SECRET, "X-Gitlab-Event": "Push Hook"}  # past the hook receiver's check
BANK_SIZE = 4
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
TRACE_MARKERS = ("traceback", 'file "/', "sqlalchemy.", "psycopg", "site-packages")


ROUTES = plugin_routes()


def test_the_known_routes_are_discovered():
    found = {(r.path, m) for r in ROUTES for m in r.methods}
    assert found >= {
        ("/sync/", "POST"),
        ("/sync/{project_id}", "POST"),
        ("/sync/{job_execution_id}", "GET"),
        ("/abandon/{job_instance_id}", "PUT"),
    }


# ------------------------------------------------------------------------------------------------ the stack

STACK = RealStack(
    name="requests",
    group=GROUP,
    token=TOKEN,
    bank_size=BANK_SIZE,
    seed=23,
    webhook_secret=HOOK_SECRET,
    extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"},  # every run here is one a request made
    options={"users": {"admin": "admin", "viewer": "viewer"}},
)


@pytest.fixture(scope="module")
def synced(stack, imrt):
    """The DAG unpaused and one sync done: the tables hold rows that a wrongly accepted request could change."""
    stack.unpause(DAG_ID)
    run_id = stack.trigger(DAG_ID)
    assert stack.wait_for_run(DAG_ID, run_id) == "success"
    wait_for_quiet(stack, imrt)
    with imrt.connect() as conn:
        return {
            "project_id": conn.scalar(sa.text("SELECT min(project_id) FROM item_git")),
            "job_execution_id": conn.scalar(sa.text("SELECT max(job_execution_id) FROM batch_job_execution")),
            "job_instance_id": conn.scalar(sa.text("SELECT max(job_instance_id) FROM batch_job_instance")),
        }


def runs(stack) -> list[tuple[str, str]]:
    body = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100}).json()
    assert body["total_entries"] == len(body["dag_runs"])
    return sorted((r["dag_run_id"], r["state"]) for r in body["dag_runs"])


def table_digests(imrt) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of every table of the imrt database."""
    with imrt.connect() as conn:
        tables = conn.scalars(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).all()
        return {
            table: tuple(
                conn.execute(
                    sa.text(
                        f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{table}\" t"
                    )
                ).one()
            )
            for table in tables
        }


def state(stack, imrt) -> dict:
    return {"dag runs": runs(stack), "imrt tables": table_digests(imrt)}


def wait_for_quiet(stack, imrt) -> None:
    """No run active and every execution row closed (the mirror writes the end of a run after it ends)."""
    wait_until(lambda: not [r for r in runs(stack) if r[1] in ("queued", "running")], 300, "no active run")
    with imrt.connect() as conn:
        wait_until(
            lambda: conn.scalar(sa.text("SELECT count(*) FROM batch_job_execution WHERE end_time IS NULL")) == 0,
            60,
            "every execution row to end",
        )


def changes(before: dict, after: dict) -> list[str]:
    found = []
    if before["dag runs"] != after["dag runs"]:
        found.append(f"dag runs {before['dag runs']} -> {after['dag runs']}")
    for table in sorted(set(before["imrt tables"]) | set(after["imrt tables"])):
        if before["imrt tables"].get(table) != after["imrt tables"].get(table):
            found.append(f"table {table}: {before['imrt tables'].get(table)} -> {after['imrt tables'].get(table)}")
    return found


@dataclass
class Answer:
    status: int
    headers: dict
    body: str


def send(
    stack, method: str, path: str, *, token: str | None = None, body: bytes | None = None, headers: dict | None = None
) -> Answer:
    """One request with the path exactly as given (no normalisation of ``..`` or of percent-escapes)."""
    conn = http.client.HTTPConnection(stack.host, stack.api_port, timeout=60)
    try:
        sent = {"Connection": "close", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        # The server may answer before reading the whole body: its answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read().decode("utf-8", "replace"),
        )
    finally:
        conn.close()


def _example_values(route: PluginRoute, synced: dict) -> dict[str, str]:
    """Real ids for the route's parameters, so that a request that got through would act on real data."""
    keys = (("project", "project_id"), ("execution", "job_execution_id"), ("instance", "job_instance_id"))
    values = {}
    for name in route.params:
        key = name if name in synced else next((k for word, k in keys if word in name), None)
        values[name] = str(synced[key] if key else 1)
    return values


def rewritten_by_root_middleware(path: str) -> set[str]:
    """The paths the plugin's root middlewares turn ``path`` into before routing (e.g. ``/sync`` -> ``/sync/``)."""
    seen: set[str] = set()

    async def app(scope, receive, send):
        seen.add(scope["path"])

    for entry in plugin_class().fastapi_root_middlewares:
        middleware = entry["middleware"](app, *entry.get("args", ()), **entry.get("kwargs", {}))
        asyncio.run(middleware({"type": "http", "path": path, "raw_path": path.encode(), "root_path": ""}, None, None))
    return seen - {path}


def concrete_paths(route: PluginRoute, synced: dict) -> list[str]:
    """The route's path with real ids, plus its form without the trailing slash where the plugin serves that too."""
    path = route.url(**_example_values(route, synced))
    bare = path.rstrip("/")
    return [path, bare] if bare and path in rewritten_by_root_middleware(bare) else [path]


# ------------------------------------------------------------------------------------------------ a. who may call


def test_every_route_refuses_no_token_and_a_viewer(stack, synced, imrt):
    viewer = stack.token("viewer")
    wait_for_quiet(stack, imrt)
    before = state(stack, imrt)
    wrong = []
    checked = 0
    for route in ROUTES:
        for method in sorted(route.methods):
            for path in concrete_paths(route, synced):
                if route.is_webhook:
                    attempts = [("no token, no X-Gitlab-Token", None, 401), ("viewer, no X-Gitlab-Token", viewer, 401)]
                else:
                    attempts = [("no token", None, 401), ("viewer", viewer, 403)]
                for who, token, expected in attempts:
                    answer = send(stack, method, path, token=token)
                    checked += 1
                    if answer.status != expected:
                        wrong.append(
                            f"{method} {path} as {who}: {answer.status} {answer.body[:200]!r}, expected {expected}"
                        )
    assert checked >= 10
    assert wrong == []
    assert changes(before, state(stack, imrt)) == []


# ------------------------------------------------------------------------------------------------ b. bad requests

MALFORMED_BODIES = [
    (b'{"mode": "full", "item_ids": [', "application/json"),
    (b"not json at all \x00\xff", "application/json"),
    (b"<xml>&entity;</xml>", "application/xml"),
]
HUGE_BODY = (b'{"item_ids": [' + b"1," * (5 * 1024 * 1024 // 2) + b"1]}", "application/json")  # about 5 MiB
BAD_IDS = [
    "abc",
    "-1",
    str(-(2**70)),
    str(2**70),
    str(2**63),
    "1.5",
    "1e3",
    "0x1F",
    "%20",
    "%00",
    quote("1;DROP TABLE item", safe=""),
    quote("1' OR '1'='1", safe=""),
    "1'%20OR%20'1'='1",
    "1;DROP%20TABLE%20item",
    "..",
    "../",
    "%2e%2e",
    "%2e%2e%2f",
    "..%2F",
    "..%2F..%2Fapi%2Fv2%2Fdags",
    "....%2F%2F",
    "%252e%252e%252f",
]
TRAVERSALS = ["/../api/v2/dags", "/%2e%2e%2fapi%2fv2%2fdags", "/..%2F..%2Fapi%2Fv2%2Fdags", "/..;/abandon/1"]


def bad_requests(synced: dict) -> list[tuple[str, str, bytes | None, dict, int | None]]:
    """``(method, path, body, headers, expected status or None for any 4xx)`` for every plugin route.

    The hook receiver's requests carry its secret token, so that they get past its authentication.
    """
    cases = []
    paths: dict[str, dict] = {}
    for route in ROUTES:
        extra = HOOK_HEADERS if route.is_webhook else {}
        for method in sorted(route.methods):
            for path in concrete_paths(route, synced):
                paths[path] = extra
                for body, content_type in [*MALFORMED_BODIES, HUGE_BODY]:
                    cases.append((method, path, body, {**extra, "Content-Type": content_type}, None))
            for name in route.params:
                for bad in BAD_IDS:
                    values = {**_example_values(route, synced), name: bad}
                    cases.append((method, route.url(**values), None, extra, None))
            if not route.params:
                for path in concrete_paths(route, synced):
                    for traversal in TRAVERSALS:
                        cases.append((method, path.rstrip("/") + traversal, None, extra, None))
    for path, extra in sorted(paths.items()):
        # /sync is served as /sync/ (the plugin's root middleware)
        allowed = {m for r in ROUTES for m in r.methods if r.matches(path) or r.matches(path + "/")}
        for method in METHODS:
            if method not in allowed and not (method == "HEAD" and "GET" in allowed):
                cases.append((method, path, None, extra, 405))
    return cases


def test_bad_requests_get_4xx_and_change_nothing(stack, synced, imrt):
    token = stack.token("admin")
    wait_for_quiet(stack, imrt)
    before = state(stack, imrt)
    wrong = []
    cases = bad_requests(synced)
    redirects = []
    for method, path, body, headers, expected in cases:
        answer = send(stack, method, path, token=token, body=body, headers=headers)
        what = f"{method} {path}" + (
            f" with a {len(body)}-byte {headers['Content-Type']} body {body[:30]!r}" if body else ""
        )
        if expected is None and answer.status in (307, 308):
            # FastAPI's trailing-slash redirect (e.g. /sync/../ -> /sync/..): it acts on nothing itself; it must
            # stay on the same route prefix, and where it leads must be a 4xx too.
            target = urlsplit(answer.headers.get("location", ""))
            prefix = "/" + path.split("/")[1]
            if target.netloc != f"{stack.host}:{stack.api_port}" or not target.path.startswith(prefix + "/"):
                wrong.append(f"{what}: {answer.status} redirect out of {prefix}: {answer.headers.get('location')!r}")
                continue
            redirects.append(f"{what} -> {target.path}")
            what += f" (redirected to {target.path})"
            answer = send(stack, method, target.path, token=token, body=body, headers=headers)
        if expected is not None and answer.status != expected:
            wrong.append(f"{what}: {answer.status} {answer.body[:300]!r}, expected {expected}")
        elif not 400 <= answer.status < 500:
            wrong.append(f"{what}: {answer.status} {answer.body[:300]!r}, expected a 4xx")
        elif any(marker in answer.body.lower() for marker in TRACE_MARKERS):
            wrong.append(f"{what}: {answer.status} with a stack trace or internals: {answer.body[:500]!r}")
    assert len(cases) > 100
    after = state(stack, imrt)
    assert wrong == [], "\n".join(wrong)
    assert changes(before, after) == []
    assert stack.api("GET", "/api/v2/monitor/health").status_code == 200


# ------------------------------------------------------------------------------------------------ c. concurrency


def test_100_concurrent_posts_start_exactly_one_run(stack, synced, imrt):
    token = stack.token("admin")
    wait_for_quiet(stack, imrt)
    before = {run_id for run_id, _ in runs(stack)}
    workers = 100
    start = threading.Barrier(workers + 1)
    local = threading.local()

    def post(_: int) -> requests.Response:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        start.wait(timeout=60)
        return local.session.post(f"{stack.url}/sync", headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def probe() -> tuple[int, float]:
        start.wait(timeout=60)
        began = time.monotonic()
        response = requests.get(f"{stack.url}/api/v2/monitor/health", timeout=60)
        return response.status_code, time.monotonic() - began

    with ThreadPoolExecutor(max_workers=workers + 1) as pool:
        health = pool.submit(probe)
        answers = list(pool.map(post, range(workers)))
    assert health.result()[0] == 200, health.result()

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * (workers - 1), {a.status_code: a.text[:300] for a in answers}
    started = next(a for a in answers if a.status_code == 200)
    body = started.json()
    assert list(body) == ["jobExecutionId", "jobInstanceId", "name", "status", "message"]
    assert (body["name"], body["status"], body["message"]) == (
        "itemSynchronizationJob",
        "STARTING",
        "Started itemSynchronizationJob successfully",
    )
    legacy_409 = (
        f"A job execution for this job is already running: JobInstance: id={body['jobInstanceId']}, version=0, "
        "Job=[itemSynchronizationJob].  To abandon the running execution of this job, make a PUT call to /abandon, "
        "passing in the job instance id"
    )
    for answer in answers:
        if answer.status_code == 409:
            assert answer.headers["content-type"].startswith("text/plain") and answer.text == legacy_409
    new_runs = [run_id for run_id, _ in runs(stack) if run_id not in before]
    assert new_runs == [f"legacy__{body['jobExecutionId']}"]
    assert requests.get(f"{stack.url}/api/v2/version", timeout=30).status_code == 200

    assert stack.wait_for_run(DAG_ID, new_runs[0]) == "success"
    view = wait_until(
        lambda: (
            (
                v := requests.get(
                    f"{stack.url}/sync/{body['jobExecutionId']}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                ).json()
            )["endTime"]
            and v
        ),
        60,
        "the execution to end",
    )
    assert view["status"] == "COMPLETED"
    with imrt.connect() as conn:
        assert (
            conn.scalar(
                sa.text("SELECT count(*) FROM batch_job_execution WHERE job_execution_id > :i"),
                {"i": synced["job_execution_id"]},
            )
            == 1
        )

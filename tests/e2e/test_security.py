"""Secrets never leak: a full sync under the real stack, then everything it produced is searched for the secrets.

The run uses recognisable secrets: the GitLab token, the webhook secret and the password of the PostgreSQL role
that owns the imrt database. It is triggered through the REST API with a token, under the real scheduler, against a
bank with one malformed ``item.json`` (a failed item), one repository whose fetch fails (a retried task) and rate
limited hook creation (a retried request); the GitLab hook receiver, if the plugin has one, is sent the webhook
secret with a malformed event. Then every log file of the stack (task logs of every try and map index,
the scheduler, API server and DAG processor logs), every XCom value, every task instance's rendered fields, the run
and its conf, the legacy API's view of the execution, every row of every table of the imrt database and of
Airflow's metadata database, and every file of the git cache are searched for each secret in the forms it could
take (plain, URL-encoded, the git ``Authorization`` header's base64, ...). The search is tested against planted
secrets in each kind of place, so an empty result means something.

While the sync runs, the command line of every process on the machine is sampled: the token is never on one.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import plugin_routes, wait_until
from stack_fixtures import RealStack

from devstack.postgres import sqlalchemy_url
from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

GROUP = "iat-secure"
BANK_SIZE = 8
GITLAB_TOKEN = f"glpat-SECRET-{uuid.uuid4().hex}"
WEBHOOK_SECRET = f"whsec-SECRET-{uuid.uuid4().hex}"
DB_PASSWORD = f"pw-SECRET-{uuid.uuid4().hex}"
SECRETS = {"GitLab token": GITLAB_TOKEN, "webhook secret": WEBHOOK_SECRET, "imrt database password": DB_PASSWORD}
WEBHOOK_URL = "https://imrt.example.org/webHook"
BROKEN, FLAKY = 1, 4  # indexes in the bank: a malformed item.json; a repository whose first fetches fail


# ------------------------------------------------------------------------------------------------ the search


def secret_forms(secret: str) -> list[tuple[bytes, bool]]:
    """``(needle, case_sensitive)`` for every form the secret could take in text or bytes.

    Plain, its random part alone, URL-encoded, JSON-escaped, hex; base64 of the secret and of git's basic auth
    ``oauth2:<token>`` (the ``Authorization`` header), standard and URL-safe, as a whole and as the part of the
    base64 of any longer text containing the secret that depends on the secret alone (all three alignments).
    """
    plain = secret.encode()
    forms: list[tuple[bytes, bool]] = [
        (plain.lower(), False),
        (secret.rsplit("-", 1)[1].encode().lower(), False),
        (quote(secret, safe="").encode().lower(), False),
        (json.dumps(secret)[1:-1].encode().lower(), False),
        (plain.hex().encode(), False),
    ]
    for text in (plain, b"oauth2:" + plain):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.append((encode(text).rstrip(b"="), True))
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + plain)
            first = -(-8 * shift // 6)  # the first character made of the secret's bits only
            last = 8 * (shift + len(plain)) // 6  # past the last one
            forms.append((encoded[first:last], True))
    return forms


def find_secrets(sources: Iterable[tuple[str, str | bytes]], secrets: dict[str, str] = SECRETS) -> list[str]:
    """Where any form of any secret occurs: one line per (secret, place)."""
    needles = {name: secret_forms(secret) for name, secret in secrets.items()}
    found = []
    for where, content in sources:
        data = content if isinstance(content, bytes) else str(content).encode("utf-8", "surrogateescape")
        lowered = data.lower()
        for name, forms in needles.items():
            hits = [needle for needle, exact in forms if needle in (data if exact else lowered)]
            if hits:
                found.append(f"{name} in {where} (as {hits[0].decode(errors='replace')!r})")
    return found


def _with_inflated(data: bytes) -> bytes:
    """The bytes, plus their zlib-inflated form when they are zlib data (git objects, compressed columns)."""
    if data[:1] == b"\x78":
        try:
            return data + b"\n" + zlib.decompress(data)
        except zlib.error:
            pass
    return data


def files_under(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield str(path), _with_inflated(path.read_bytes())


def _render(value) -> bytes:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return _with_inflated(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str).encode()
    return str(value).encode("utf-8", "surrogateescape")


def database_rows(url, label: str, seen: dict[str, int] | None = None) -> Iterator[tuple[str, bytes]]:
    """Every row of every table of every schema of the database (``seen``: rows read per table)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                    "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
                )
            ).all()
            for schema, table in tables:
                rows = conn.execute(sa.text(f'SELECT * FROM "{schema}"."{table}"')).all()
                if seen is not None:
                    seen[f"{schema}.{table}"] = len(rows)
                for index, row in enumerate(rows):
                    yield f"{label} {schema}.{table} row {index}", b"\x1f".join(_render(v) for v in row)
    finally:
        engine.dispose()


def _ti_path(run_id: str, ti: dict) -> str:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{ti['task_id']}"
    return path + (f"/{ti['map_index']}" if ti["map_index"] >= 0 else "")


def rest_documents(stack, run_id: str, seen: dict[str, list] | None = None) -> Iterator[tuple[str, str]]:
    """What the REST API shows of the run: the run (conf, note), and per task instance (mapped ones included) its
    details with the rendered fields, its tries, every log of every try and every XCom value."""
    seen = seen if seen is not None else {}

    def get(path: str, **params) -> str:
        response = stack.api("GET", path, params=params)
        assert response.status_code == 200, f"GET {path} {params}: {response.status_code} {response.text}"
        return response.text

    yield "the dag run", get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")
    for ti in stack.task_instances(DAG_ID, run_id):
        name = f"{ti['task_id']}[{ti['map_index']}]"
        detail = get(_ti_path(run_id, ti))
        seen.setdefault("rendered_fields", []).append((name, json.loads(detail).get("rendered_fields")))
        yield f"task instance {name}", detail
        yield f"tries of {name}", get(_ti_path(run_id, ti) + "/tries")
        for try_number in range(1, ti["try_number"] + 1):
            seen.setdefault("logs", []).append((name, try_number))
            yield (
                f"log of {name} try {try_number}",
                stack.task_log(DAG_ID, run_id, ti["task_id"], try_number=try_number, map_index=ti["map_index"]),
            )
        xcom_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{ti['task_id']}/xcomEntries"
        entries = json.loads(get(xcom_path, map_index=ti["map_index"], limit=100))["xcom_entries"]
        for entry in entries:
            seen.setdefault("xcoms", []).append((name, entry["key"]))
            yield (
                f"xcom {entry['key']} of {name}",
                get(f"{xcom_path}/{quote(entry['key'], safe='')}", map_index=ti["map_index"]),
            )


# ------------------------------------------------------------------------------------------------ the stack


class CommandLineSampler(threading.Thread):
    """Samples the command line of every process on the machine until stopped."""

    def __init__(self) -> None:
        super().__init__(name="cmdline-sampler", daemon=True)
        self.command_lines: set[str] = set()
        self.sweeps = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                cmdline = proc.info.get("cmdline")
                if cmdline:
                    with self._lock:
                        self.command_lines.add("\0".join(cmdline))
            self.sweeps += 1
            self._stopping.wait(0.02)  # the sampling period, not a synchronisation

    def seen(self) -> set[str]:
        """The distinct command lines so far, arguments separated by NUL."""
        with self._lock:
            return set(self.command_lines)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)


STACK = RealStack(
    name="sec",
    group=GROUP,
    token=GITLAB_TOKEN,
    bank_size=BANK_SIZE,
    seed=17,
    webhook_url=WEBHOOK_URL,
    webhook_secret=WEBHOOK_SECRET,
    extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"},  # only the run the test triggers
)


@pytest.fixture(scope="module")
def item_bank(item_bank):
    """The module's bank, one item of it broken."""
    broken = item_bank.projects[BROKEN]
    path = broken["path"]
    item_bank.bank.push_commit(broken["id"], files={"item.json": f'{{"id": "{path}", "type": '}, message="broken")
    return item_bank


@pytest.fixture(scope="module")
def imrt(pg_admin_url):
    """The imrt database, owned by a role of its own whose password is a recognisable secret."""
    role = f"imrt_sec_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(sqlalchemy_url(pg_admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{DB_PASSWORD}'"))
        conn.execute(sa.text(f'CREATE DATABASE "{role}" OWNER "{role}"'))
    engine = sa.create_engine(sqlalchemy_url(pg_admin_url, role).set(username=role, password=DB_PASSWORD))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.fixture(scope="module")
def synced(stack, item_bank):
    """One full sync, triggered through the REST API with a token, with the command lines sampled meanwhile."""
    bank, projects, server = item_bank
    flaky = projects[FLAKY]
    server.faults.add(
        "git upload-pack",
        "status",
        status=500,
        times=2,
        path_regex=rf"/{re.escape(flaky['path_with_namespace'])}\.git/",
    )
    server.faults.add("git upload-pack", "latency", seconds=2)  # every fetch lasts long enough to be sampled
    server.faults.add("POST /api/v4/projects/:id/hooks", "status", status=429, retry_after=1, times=2)
    stack.unpause(DAG_ID)
    sampler = CommandLineSampler()
    sampler.start()
    try:
        response = stack.api(
            "POST",
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            token=stack.token("admin"),
            json={"logical_date": None, "conf": {"mode": "full"}},
        )
        assert response.status_code == 200, response.text
        run_id = response.json()["dag_run_id"]
        state = stack.wait_for_run(DAG_ID, run_id, timeout=400)
    finally:
        sampler.stop()
        server.faults.clear()
    # The GitLab hook receiver (if the plugin has one) is presented the webhook secret, and a wrong one.
    hook_answers = {}
    for route in plugin_routes():
        if route.is_webhook and "POST" in route.methods and not route.params:
            for token in (WEBHOOK_SECRET, f"whsec-WRONG-{uuid.uuid4().hex}"):
                answer = requests.post(
                    f"{stack.url}{route.path}",
                    data=b'{"object_kind": "push", ',
                    timeout=30,
                    headers={
                        "X-Gitlab-Token": token,
                        "X-Gitlab-Event": "Push Hook",
                        "Content-Type": "application/json",
                    },
                )
                hook_answers[(route.path, token == WEBHOOK_SECRET)] = answer.status_code
    return {
        "run_id": run_id,
        "state": state,
        "sampler": sampler,
        "flaky": flaky,
        "broken": projects[BROKEN],
        "hook_answers": hook_answers,
    }


def _execution(imrt, run_id: str):
    with imrt.connect() as conn:
        return (
            conn.execute(
                sa.text(
                    "SELECT e.* FROM batch_job_execution e JOIN batch_job_execution_context c "
                    "ON c.job_execution_id = e.job_execution_id WHERE c.short_context LIKE :run"
                ),
                {"run": f'%"{run_id}"%'},
            )
            .mappings()
            .one()
        )


def _ended_execution(imrt, run_id: str):
    return wait_until(lambda: (row := _execution(imrt, run_id))["end_time"] and row, 60, "the execution row to end")


# ------------------------------------------------------------------------------------------------ the tests


def test_the_run_used_every_secret_and_went_through_its_error_paths(stack, synced, item_bank, imrt):
    bank, projects, server = item_bank
    run_id, broken, flaky = synced["run_id"], synced["broken"], synced["flaky"]
    assert synced["state"] == "failed"  # the malformed item fails the run at summary
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in stack.task_instances(DAG_ID, run_id)}
    sync_tis = {ti["rendered_map_index"]: ti for (task, _), ti in tis.items() if task == "sync"}
    assert sorted(sync_tis) == sorted(p["path"] for p in projects)
    assert sync_tis[broken["path"]]["state"] == "failed"
    assert sync_tis[flaky["path"]]["state"] == "success" and sync_tis[flaky["path"]]["try_number"] == 2
    assert tis[("dispatch_webhooks", -1)]["state"] == "success"
    # The webhook secret went to GitLab with every hook; the token opened the API and git.
    for project in projects:
        assert [(h["url"], h["token"]) for h in bank.hooks(project["id"])] == [(WEBHOOK_URL, WEBHOOK_SECRET)]
    assert server.counters().get("git upload-pack", 0) >= BANK_SIZE
    # The database password opened the imrt database: the run created its tables as the owning role.
    with imrt.connect() as conn:
        owners = set(conn.scalars(sa.text("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")))
        assert owners == {imrt.url.username}
        assert conn.scalar(sa.text("SELECT count(*) FROM item")) == BANK_SIZE - 1
    row = _ended_execution(imrt, run_id)
    assert row["status"] == "FAILED"
    for (path, right), status in synced["hook_answers"].items():
        assert status == (400 if right else 401), (path, right, status)  # the body is malformed
    assert str(broken["id"]) in row["exit_message"] and "item.json" in row["exit_message"]


def test_no_secret_in_anything_the_run_produced(stack, synced, stack_root, imrt):
    run_id = synced["run_id"]
    execution = _ended_execution(imrt, run_id)
    token = stack.token("admin")
    view = stack.api("GET", f"/sync/{execution['job_execution_id']}", token=token)
    assert view.status_code == 200 and view.json()["status"] == "FAILED"

    found: list[str] = []
    # Every file the stack wrote: task logs (all tries, all map indexes), component logs, the git cache, config.
    files = dict(files_under(stack_root))
    found += find_secrets(files.items())
    attempts = {
        (
            p.parent.parent.name if p.parent.name.startswith("map_index=") else p.parent.name,
            int(p.parent.name.split("=")[1]) if p.parent.name.startswith("map_index=") else -1,
            int(p.stem.split("=")[1]),
        )
        for p in stack.logs_dir.rglob("attempt=*.log")
        if f"run_id={run_id}" in str(p)
    }
    expected = {
        (f"task_id={ti['task_id']}", ti["map_index"], k)
        for ti in stack.task_instances(DAG_ID, run_id)
        for k in range(1, ti["try_number"] + 1)
    }
    assert attempts == expected, "every try of every task instance has a log file, and the search read it"
    for component in ("api-server", "scheduler", "dag-processor"):
        assert files[str(stack.log_file(component))], f"the {component} log is empty"

    # What the REST API shows: the run and its conf, rendered fields, tries, logs and XCom values.
    seen: dict[str, list] = {}
    found += find_secrets(rest_documents(stack, run_id, seen))
    rendered = dict(seen["rendered_fields"])
    assert all(rendered[name] for name in rendered if name.startswith("sync[")), rendered
    assert {key for _, key in seen["xcoms"]} >= {"return_value", "jobExecutionId", "plan", "outcome"}
    assert len(seen["logs"]) == len(expected)
    found += find_secrets([("GET /sync/{id}", view.text)])

    # Every row of every table: the imrt database (Spring Batch tables with the exit message, item tables) and
    # Airflow's metadata database (XComs, rendered fields, the run's conf, task instance history, the audit log).
    imrt_tables: dict[str, int] = {}
    found += find_secrets(database_rows(imrt.url, "imrt", imrt_tables))
    assert imrt_tables["public.batch_job_execution"] >= 1 and imrt_tables["public.item"] == BANK_SIZE - 1
    airflow_tables: dict[str, int] = {}
    found += find_secrets(database_rows(stack.metadata_url, "airflow metadata", airflow_tables))
    assert airflow_tables["public.xcom"] > 0 and airflow_tables["public.rendered_task_instance_fields"] > 0
    assert found == []


def test_git_credentials_never_reach_a_repository_config(synced, stack_root):
    cache = stack_root / "git-cache"
    configs = sorted(cache.rglob("config"))
    assert len(configs) == BANK_SIZE, configs  # one bare repository per item
    found = find_secrets((str(c), c.read_bytes()) for c in configs)
    assert found == []
    for config in configs:
        text = config.read_text().lower()
        assert "extraheader" not in text and "oauth2" not in text and "authorization" not in text, config
        assert "@" not in text, f"credentials in a URL of {config}"


def test_the_token_is_never_on_a_command_line(synced, item_bank):
    _, projects, server = item_bank
    sampler = synced["sampler"]
    fetches = [c for c in sampler.command_lines if "fetch" in c.split("\0") and server.url in c]
    # The sampling did overlap the git fetches (each one lasted at least 2 s).
    assert len(fetches) >= BANK_SIZE // 2, (sampler.sweeps, fetches)
    found = find_secrets((c.replace("\0", " "), c) for c in sampler.command_lines)
    assert found == []


def test_the_search_finds_planted_secrets(stack, synced, stack_root, imrt):
    """Each kind of place searched above, with a secret planted in it, is reported."""
    # The forms: in text, in a git Authorization header, in base64 at any alignment, URL-encoded, uppercase.
    header = "Authorization: Basic " + base64.b64encode(f"oauth2:{GITLAB_TOKEN}".encode()).decode()
    for shift in range(3):
        embedded = base64.b64encode(b"x" * shift + f"password={DB_PASSWORD}&".encode()).decode()
        assert [f.split(" (as ")[0] for f in find_secrets([("b64", embedded)])] == ["imrt database password in b64"]
    assert find_secrets([("header", header)])[0].startswith("GitLab token in header")
    assert find_secrets([("quoted", quote(f"x={WEBHOOK_SECRET}"))])[0].startswith("webhook secret in quoted")
    assert find_secrets([("upper", WEBHOOK_SECRET.upper())])[0].startswith("webhook secret in upper")
    assert find_secrets([("clean", "glpat-*** whsec-*** pw-***")]) == []

    # A command line.
    sampler = CommandLineSampler()
    sampler.start()
    planted = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", f"--token={GITLAB_TOKEN}"], stdin=subprocess.PIPE
    )
    try:
        wait_until(lambda: any(GITLAB_TOKEN in c for c in sampler.seen()), 30, "the planted command line")
    finally:
        planted.communicate(timeout=30)
        sampler.stop()
    hits = find_secrets((c.replace("\0", " "), c) for c in sampler.command_lines)
    assert any(h.startswith(f"GitLab token in {sys.executable} -c ") for h in hits), hits

    # A file deep in the logs directory.
    planted_log = stack.logs_dir / "dag_id=planted" / "run_id=planted" / "task_id=planted" / "attempt=1.log"
    planted_log.parent.mkdir(parents=True)
    planted_log.write_text(json.dumps({"event": f"token {GITLAB_TOKEN}"}) + "\n")
    try:
        assert any(str(planted_log) in f for f in find_secrets(files_under(stack_root)))
    finally:
        planted_log.unlink()

    # An XCom value of a task instance of the run (through the REST API and in the metadata database).
    run_id = synced["run_id"]
    xcoms = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/summary/xcomEntries"
    created = stack.api("POST", xcoms, json={"key": "planted", "value": {"nested": [f"secret {WEBHOOK_SECRET}"]}})
    assert created.status_code == 201, created.text
    try:
        assert "webhook secret in xcom planted of summary[-1]" in " ".join(find_secrets(rest_documents(stack, run_id)))
        assert any(
            f.startswith("webhook secret in airflow metadata public.xcom row")
            for f in find_secrets(database_rows(stack.metadata_url, "airflow metadata"))
        )
    finally:
        assert stack.api("DELETE", f"{xcoms}/planted").status_code == 204

    # A row of a new table of the imrt database: text, jsonb and bytea columns.
    with imrt.begin() as conn:
        conn.execute(sa.text("CREATE TABLE planted (note text, doc jsonb, blob bytea)"))
        conn.execute(
            sa.text(
                "INSERT INTO planted VALUES ('nothing', NULL, NULL), (NULL, CAST(:doc AS jsonb), NULL), "
                "(NULL, NULL, :blob)"
            ),
            {"doc": json.dumps({"password": DB_PASSWORD}), "blob": zlib.compress(GITLAB_TOKEN.encode())},
        )
    try:
        found = [f for f in find_secrets(database_rows(imrt.url, "imrt")) if " public.planted " in f]
        assert [f.split(" (as ")[0] for f in found] == [
            "imrt database password in imrt public.planted row 1",
            "GitLab token in imrt public.planted row 2",
        ]
    finally:
        with imrt.begin() as conn:
            conn.execute(sa.text("DROP TABLE planted"))

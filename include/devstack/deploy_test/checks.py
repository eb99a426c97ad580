"""What the deploy test shows against the running containers. Each check returns a :class:`Check` (its name,
whether it held, and the evidence printed for it); a check that cannot go on raises, and the run reports it as
failed with the error."""

from __future__ import annotations

import email
import json
import os
import re
import signal
import time
from dataclasses import dataclass
from email import policy
from pathlib import Path

import requests

from imrt_compat.task_contract import SYNC

from . import engine
from .probe import DAG_ID, EVENTS_DAG_ID, Airflow, Sql, wait_for
from .settings import ADMIN, ALERT_TO, AUTOMATION, GROUP, OIDC_PROVIDER, Deployment, secret_values

ONE_SHOT = {"airflow-init", "imrt-bootstrap", "imrt-migrate"}
SECRET_MOUNTS = "/run/secrets/"
HEALTHY_WITHIN = 600
RUN_WITHIN = 900
PUSH_TO_ROW_WITHIN = 60
UNPAUSE_SETTLE = 10
IMRT_TABLES = ("item", "item_git", "item_log", "batch_job_execution", "imrt_webhook_event", "imrt_project_hook")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    evidence: str


# ------------------------------------------------------------------------------------------------ containers


def inspect(container: str) -> dict:
    return json.loads(engine.docker("inspect", container))[0]


def service_state(container: str) -> str:
    state = inspect(container)["State"]
    if state["Status"] == "exited":
        return f"exited {state['ExitCode']}"
    health = (state.get("Health") or {}).get("Status")
    return health or state["Status"]


def service_states(compose: engine.Compose) -> dict[str, str]:
    return {service: service_state(cid) for service, cid in sorted(compose.container_ids().items())}


def settled(states: dict[str, str], expected: set[str]) -> bool:
    if set(states) != expected:
        return False
    return all(state == ("exited 0" if name in ONE_SHOT else "healthy") for name, state in states.items())


def wait_until_healthy(compose: engine.Compose, expected: set[str], timeout: float = HEALTHY_WITHIN) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = service_states(compose)
        failed = {name: state for name, state in states.items() if state.startswith("exited") and state != "exited 0"}
        if failed:
            raise RuntimeError(f"services failed: {failed}")
        if settled(states, expected):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"not healthy within {timeout:.0f} s: {states}")
        time.sleep(3)


def failed_service_logs(compose: engine.Compose) -> str:
    tails = []
    for service, cid in sorted(compose.container_ids().items()):
        if service_state(cid).startswith("exited") and service_state(cid) != "exited 0":
            tails.append(f"{service}: ...{engine.docker('logs', '--tail', '5', cid)[-600:]}")
    return "\n".join(tails)


def check_up_and_healthy(compose: engine.Compose, expected: set[str], started: float) -> Check:
    """`docker-compose --profile demo up --detach`, then every service healthy and every one-shot job exited 0."""
    try:
        compose("up", "--detach", timeout=900)
        states = wait_until_healthy(compose, expected)
    except (engine.EngineError, RuntimeError, TimeoutError) as error:
        return Check(
            "every service healthy (one-shot jobs exited 0)",
            False,
            f"{str(error)[-800:]}\n{failed_service_logs(compose)}",
        )
    shown = ", ".join(f"{name}: {state}" for name, state in states.items())
    return Check(
        "every service healthy (one-shot jobs exited 0)",
        True,
        f"{len(states)} services, {time.monotonic() - started:.0f} s after `up`: {shown}",
    )


def check_image_code_runs(compose: engine.Compose, deployment: Deployment) -> Check:
    """No bind mount but the secret files; the packages imported are the image's installed copies; no secret
    value in any container's environment."""
    problems, volumes, secret_files = [], 0, 0
    secrets = secret_values(deployment.secrets_dir)
    for service, cid in sorted(compose.container_ids().items()):
        details = inspect(cid)
        for mount in details["Mounts"]:
            if mount["Type"] == "volume":
                volumes += 1
            elif mount["Type"] == "bind" and mount["Destination"].startswith(SECRET_MOUNTS):
                secret_files += 1
            else:
                problems.append(f"{service}: {mount['Type']} mount {mount.get('Source')} -> {mount['Destination']}")
        env = "\n".join(details["Config"]["Env"] or [])
        leaked = [value for value in secrets if value in env]
        if leaked:
            problems.append(f"{service}: {len(leaked)} secret value(s) in its environment")
    scheduler = compose.container_ids()["airflow-scheduler"]
    where = engine.docker(
        "exec",
        scheduler,
        "python",
        "-c",
        "import imrt_sync, imrt_compat, os; print(imrt_sync.__file__); print(imrt_compat.__file__); "
        "print(os.environ.get('PYTHONPATH', '(not set)'))",
    ).splitlines()
    if not all("/home/airflow/.local/lib/" in path for path in where[:2]):
        problems.append(f"the scheduler imports {where[:2]}")
    evidence = (
        f"mounts: {volumes} named volumes, {secret_files} secret files, no other bind mount; scheduler "
        f"imports {where[0]} and {where[1]}; PYTHONPATH {where[2]}; no secret value in any container's "
        f"environment"
    )
    return Check(
        "the image's code runs (no bind mounts, secrets only as files)", not problems, "; ".join(problems) or evidence
    )


# ------------------------------------------------------------------------------------------------ database


def check_imrt_bootstrapped(compose: engine.Compose, imrt: Sql) -> Check:
    flyway = imrt.value("SELECT count(*) FROM flyway_schema_history WHERE success")
    revision = imrt.value("SELECT version_num FROM imrt_alembic_version")
    legacy = imrt.value(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND "
        "table_name IN ('item', 'item_git', 'item_log', 'stim_link', 'project_lock', "
        "'item_attachment', 'item_form', 'batch_job_execution')"
    )
    ids = compose.container_ids()
    exits = {name: service_state(ids[name]) for name in ("imrt-bootstrap", "imrt-migrate")}
    ok = flyway == "20" and legacy == "8" and bool(revision) and set(exits.values()) == {"exited 0"}
    return Check(
        "imrt bootstrapped and migrated by the deployment (one-shot services)",
        ok,
        f"{exits}; flyway_schema_history: {flyway} applied versions; legacy tables: {legacy}/8; "
        f"imrt_alembic_version: {revision}",
    )


def row_counts(imrt: Sql, metadata: Sql) -> dict[str, str]:
    counts = {table: imrt.value(f"SELECT count(*) FROM {table}") for table in IMRT_TABLES}
    counts["airflow dag_run"] = metadata.value("SELECT count(*) FROM dag_run")
    counts["airflow ab_user"] = metadata.value("SELECT count(*) FROM ab_user")
    return counts


# ------------------------------------------------------------------------------------------------ runs


def wait_for_dag(airflow: Airflow) -> None:
    admin = airflow.token(ADMIN, "airflow_admin_password")
    wait_for("the DAG parsed", lambda: airflow.call("GET", f"/api/v2/dags/{DAG_ID}", admin).status_code == 200, 300)


def unpause(airflow: Airflow) -> None:
    admin = airflow.token(ADMIN, "airflow_admin_password")
    airflow.call("PATCH", f"/api/v2/dags/{DAG_ID}", admin, json={"is_paused": False}).raise_for_status()


def active_runs(airflow: Airflow) -> list[dict]:
    admin = airflow.token(ADMIN, "airflow_admin_password")
    answer = airflow.call(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns", admin, params={"state": ["queued", "running"], "limit": 50}
    )
    answer.raise_for_status()
    return answer.json()["dag_runs"]


def post_sync(airflow: Airflow, say) -> dict:
    """POST /sync as the automation account; a 409 (the scheduled run, started by the unpause) is waited out."""
    token = airflow.token(AUTOMATION, "imrt_automation_password")
    for _ in range(5):
        answer = airflow.call("POST", "/sync", token)
        if answer.status_code == 200:
            return answer.json()
        if answer.status_code != 409:
            raise RuntimeError(f"POST /sync answered {answer.status_code}: {answer.text[:300]}")
        say(f"    POST /sync -> 409 (a run is active: {[r['dag_run_id'] for r in active_runs(airflow)]}); waiting")
        wait_for("no active run", lambda: not active_runs(airflow), RUN_WITHIN, 5)
    raise RuntimeError("POST /sync kept answering 409")


def follow_sync(airflow: Airflow, job_execution_id: int) -> dict:
    token = airflow.token(AUTOMATION, "imrt_automation_password")

    def ended():
        answer = airflow.call("GET", f"/sync/{job_execution_id}", token)
        answer.raise_for_status()
        body = answer.json()
        return body if body.get("endTime") else None

    return wait_for(f"job execution {job_execution_id} ended", ended, RUN_WITHIN, 5)


def check_sync(airflow: Airflow, imrt: Sql, say) -> tuple[Check, int]:
    started = time.monotonic()
    wait_for_dag(airflow)
    unpause(airflow)
    time.sleep(UNPAUSE_SETTLE)  # the run of the last schedule slot, which the unpause starts, waited out by post_sync
    body = post_sync(airflow, say)
    job = int(body["jobExecutionId"])
    say(f"    POST /sync (automation account {AUTOMATION}) -> 200 jobExecutionId {job}")
    ended = follow_sync(airflow, job)
    row = imrt.rows(f"SELECT status, exit_code, exit_message FROM batch_job_execution WHERE job_execution_id = {job}")
    status, exit_code, message = row[0] if row else ("?", "?", "?")
    items = imrt.value("SELECT count(*) FROM item")
    ok = (
        ended["status"] == "COMPLETED"
        and exit_code == "COMPLETED"
        and "Total item bank ids: 300" in message
        and items == "300"
    )
    return Check(
        "POST /sync with the automation account's token -> a completed run over the demo bank",
        ok,
        f"job execution {job} {ended['status']} in {time.monotonic() - started:.0f} s; batch_job_execution: "
        f"status {status}, exit_code {exit_code}, exit_message {message!r}; {items} rows in item",
    ), job


# ------------------------------------------------------------------------------------------------ pushes


class Bank:
    """The demo item bank on its loopback port: REST for the projects, git (the developer's clone) to push."""

    def __init__(self, deployment: Deployment) -> None:
        from devstack.soak.gitclient import DeveloperGit

        self.url = f"http://127.0.0.1:{deployment.ports.itembank}"
        self.token = deployment.itembank_token
        self.git = DeveloperGit(self.url, self.token, deployment.work_dir / "git")

    def projects(self, count: int) -> list[dict]:
        answer = requests.get(
            f"{self.url}/api/v4/groups/{GROUP}/projects",
            timeout=30,
            headers={"PRIVATE-TOKEN": self.token},
            params={"per_page": count, "order_by": "id", "sort": "asc", "include_subgroups": "true"},
        )
        answer.raise_for_status()
        return answer.json()

    def item_json(self, project: dict) -> bytes:
        return self.git.read(project, "item.json") or b""

    def push(self, project: dict, content: bytes, message: str) -> str:
        return self.git.commit_and_push(project, {"item.json": content}, message, "Deploy Test")


def edited(document: bytes, label: str) -> bytes:
    data = json.loads(document)
    data.setdefault("workflow", {})["workflowStatusCode"] = label
    return (json.dumps(data, indent=2) + "\n").encode()


def recorded_sha(imrt: Sql, project_id: int) -> str | None:
    return imrt.value(f"SELECT current_commit_hash FROM item_git WHERE project_id = {project_id}")


def check_push_to_row(bank: Bank, imrt: Sql, project: dict) -> Check:
    sha = bank.push(project, edited(bank.item_json(project), f"Deploy test {int(time.time())}"), "deploy test edit")
    pushed = time.monotonic()
    wait_for(
        f"project {project['id']}'s row at {sha[:10]}",
        lambda: recorded_sha(imrt, project["id"]) == sha,
        PUSH_TO_ROW_WITHIN,
        0.5,
    )
    latency = time.monotonic() - pushed
    event = imrt.rows(
        f"SELECT id, event_type, status, run_id FROM imrt_webhook_event WHERE commit_sha = '{sha}' ORDER BY id"
    )
    ok = latency < PUSH_TO_ROW_WITHIN and bool(event)
    return Check(
        "git push -> GitLab's hook to /webHook over the compose network -> the item's row",
        ok,
        f"pushed {sha[:10]} to {project['path_with_namespace']} (project {project['id']}); "
        f"item_git.current_commit_hash = {sha[:10]} {latency:.1f} s later; hook event(s) received through "
        f"the proxy: {event}",
    )


# ------------------------------------------------------------------------------------------------ alerts


def maildir_messages(compose: engine.Compose) -> dict[str, email.message.EmailMessage]:
    """The mail sink's messages by their Maildir key."""
    container = compose.container_ids()["mailsink"]
    script = (
        "import mailbox, os, sys; root = '/var/lib/mailsink/Maildir'; "
        "[os.makedirs(os.path.join(root, sub), exist_ok=True) for sub in ('cur', 'new', 'tmp')]; "
        "sys.stdout.write('\\n\\x00\\n'.join(k + '\\x01' + m.as_string() for k, m in mailbox.Maildir(root).items()))"
    )
    out = engine.docker("exec", container, "python3", "-c", script)
    pairs = (raw.split("\x01", 1) for raw in out.split("\n\x00\n") if raw.strip())
    return {key: email.message_from_string(raw, policy=policy.default) for key, raw in pairs}


def message_text(message) -> str:
    part = message.get_body(preferencelist=("html", "plain"))
    return part.get_content() if part is not None else ""


def check_failure_alert(bank: Bank, compose: engine.Compose, airflow: Airflow, project: dict, say) -> Check:
    original = bank.item_json(project)
    seen = set(maildir_messages(compose))

    def new_alert():
        fresh = [m for key, m in maildir_messages(compose).items() if key not in seen]
        return next((m for m in fresh if f"project {project['id']}:" in message_text(m)), None)

    sha = bank.push(project, b"{ this is not JSON\n", "deploy test: a malformed item.json")
    try:
        pushed = time.monotonic()
        say(f"    pushed a malformed item.json ({sha[:10]}) to project {project['id']}; waiting for the alert")
        alert = wait_for("the failure alert e-mail", new_alert, 300, 2)
        latency = time.monotonic() - pushed
    finally:
        fixed = bank.push(project, original, "deploy test: item.json restored")
        say(f"    restored the item ({fixed[:10]})")
    text = message_text(alert)
    exit_message = re.search(r"Exit message: (.*?)</p>", text)
    links = re.findall(r'href="([^"]+)"', text)
    link = links[0] if links else ""
    page = airflow.get(link) if link.startswith(airflow.url) else None
    linked = re.search(r"/dags/([^/]+)/runs/([^/?#]+)", link)
    dag_id, run_id = (linked.group(1), requests.utils.unquote(linked.group(2))) if linked else ("", "")
    admin = airflow.token(ADMIN, "airflow_admin_password")
    run = airflow.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}", admin)
    state = run.json().get("state") if run.status_code == 200 else f"HTTP {run.status_code}"
    ok = (
        ALERT_TO in alert["To"]
        and page is not None
        and page.status_code == 200
        and dag_id == EVENTS_DAG_ID  # a push's run: the hook events' DAG
        and state == "failed"
    )
    return Check(
        "a forced failure -> the alert e-mail at the SMTP server, with a working link",
        ok,
        f"{latency:.0f} s after the push, mail to {alert['To']} from {alert['From']}: {alert['Subject']!r}, "
        f"exit message {exit_message.group(1) if exit_message else '?'!r}; link {link} -> "
        f"HTTP {page.status_code if page is not None else '-'} through the proxy; run {run_id} of {dag_id} is {state}",
    )


# ------------------------------------------------------------------------------------------------ metrics, proxy


def check_statsd_metrics(deployment: Deployment) -> Check:
    text = requests.get(f"http://127.0.0.1:{deployment.ports.statsd_exporter}/metrics", timeout=30).text
    imrt = sorted({line.split("{")[0].split()[0] for line in text.splitlines() if line.startswith("airflow_imrt_")})
    airflow = [
        line for line in text.splitlines() if line.startswith("airflow_") and not line.startswith("airflow_imrt")
    ]
    synced = next((line for line in text.splitlines() if line.startswith("airflow_imrt_items_synced")), "")
    return Check(
        "StatsD metrics at the exporter",
        bool(imrt) and bool(airflow),
        f"{len(airflow)} Airflow series; imrt metrics {imrt}; {synced}",
    )


def check_login_through_proxy(airflow: Airflow) -> Check:
    """FAB's login page at the external URL: under the identity provider login (docker-compose.oidc.yaml) one
    button per provider and no password form."""
    page = airflow.get(f"{airflow.url}/auth/login/")
    root = airflow.get(f"{airflow.url}/", allow_redirects=False)
    button = f'id="btn-signin-{OIDC_PROVIDER}"' in page.text
    password_form = 'type="password"' in page.text
    health = airflow.get(f"{airflow.url}/api/v2/monitor/health").json()
    ok = page.status_code == 200 and button and not password_form
    return Check(
        "the UI login page through the TLS reverse proxy",
        ok,
        f"GET {airflow.url}/auth/login/ -> {page.status_code}, the {OIDC_PROVIDER} button: {button}, a "
        f"password form: {password_form}, server {page.headers.get('Server')}; GET / -> {root.status_code} "
        f"{root.headers.get('Location', '')}; TLS certificate verified for the external name; health "
        f"{health.get('metadatabase', {}).get('status')}",
    )


# ------------------------------------------------------------------------------------------------ restarts


def check_down_up_keeps_rows(
    compose: engine.Compose, expected: set[str], airflow: Airflow, imrt: Sql, metadata: Sql, say
) -> Check:
    wait_for("no active run", lambda: not active_runs(airflow), RUN_WITHIN, 3)  # counts of a quiet deployment
    before = row_counts(imrt, metadata)
    say(f"    rows before: {before}")
    compose("down", timeout=600)
    started = time.monotonic()
    compose("up", "--detach", timeout=900)
    wait_until_healthy(compose, expected)
    after = row_counts(imrt, metadata)
    return Check(
        "`down` then `up` keeps every row (named volumes)",
        before == after,
        f"healthy again {time.monotonic() - started:.0f} s after `up`; rows after: {after}",
    )


def running_sync_instances(airflow: Airflow, run_id: str) -> int:
    admin = airflow.token(ADMIN, "airflow_admin_password")
    answer = airflow.call(
        "GET",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances",
        admin,
        params={"limit": 1000},
    )
    answer.raise_for_status()
    return sum(1 for ti in answer.json()["task_instances"] if ti["state"] == "running" and ti["task_id"] == SYNC)


def kill_container(container: str) -> int:
    """SIGKILL the container's first process from the host, as a crash would: not a `docker stop`, so the
    restart policy applies."""
    pid = inspect(container)["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def trigger_full_run(airflow: Airflow) -> str:
    """A full run (every item rewritten), triggered through Airflow's REST API by the automation account."""
    wait_for("no active run", lambda: not active_runs(airflow), RUN_WITHIN, 3)
    token = airflow.token(AUTOMATION, "imrt_automation_password")
    answer = airflow.call(
        "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", token, json={"logical_date": None, "conf": {"mode": "full"}}
    )
    answer.raise_for_status()
    return answer.json()["dag_run_id"]


def dag_run(airflow: Airflow, run_id: str) -> dict:
    admin = airflow.token(ADMIN, "airflow_admin_password")
    answer = airflow.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{requests.utils.quote(run_id, safe='')}", admin)
    answer.raise_for_status()
    return answer.json()


def retried_instances(airflow: Airflow, run_id: str) -> int:
    admin = airflow.token(ADMIN, "airflow_admin_password")
    answer = airflow.call(
        "GET",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{requests.utils.quote(run_id, safe='')}/taskInstances",
        admin,
        params={"limit": 1000},
    )
    answer.raise_for_status()
    return sum(1 for ti in answer.json()["task_instances"] if (ti.get("try_number") or 0) > 1)


def check_killed_container_recovers(
    compose: engine.Compose, expected: set[str], airflow: Airflow, imrt: Sql, service: str, say
) -> Check:
    run_id = trigger_full_run(airflow)
    wait_for("running sync instances", lambda: running_sync_instances(airflow, run_id) > 0, 300, 0.5)
    container = compose.container_ids()[service]
    restarts = inspect(container)["RestartCount"]
    pid = kill_container(container)
    say(f"    killed {service} (pid {pid}) during run {run_id}")
    wait_for(f"{service} restarted", lambda: inspect(container)["RestartCount"] > restarts, 120, 1)
    states = wait_until_healthy(compose, expected)
    run = wait_for(
        f"run {run_id} ended",
        lambda: (lambda r: r if r["state"] in ("success", "failed") else None)(dag_run(airflow, run_id)),
        RUN_WITHIN,
        3,
    )
    # Items whose writes met the dead database are reported failed by that run (by design: only they fail); the
    # next run, the runbook's POST /sync, must complete and leave every item in place.
    job = int(post_sync(airflow, say)["jobExecutionId"])
    after = follow_sync(airflow, job)
    items = imrt.value("SELECT count(*) FROM item")
    ok = states[service] == "healthy" and after["status"] == "COMPLETED" and items == "300"
    return Check(
        f"a container killed mid-run recovers ({service})",
        ok,
        f"{service} restarted by its restart policy (restart count {inspect(container)['RestartCount']}) "
        f"and healthy; the full run it was killed in: {run['state']} ({retried_instances(airflow, run_id)} "
        f"task instance(s) retried); the next POST /sync: job execution {job} {after['status']}: "
        f"{after.get('exitMessage')!r}; {items} items in imrt",
    )


def expected_services(compose: engine.Compose) -> set[str]:
    return set(compose("config", "--services").split())


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

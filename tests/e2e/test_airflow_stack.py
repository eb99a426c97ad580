"""End-to-end: a real Airflow stack (api-server, scheduler, dag-processor; LocalExecutor, PostgreSQL) runs a DAG."""

from __future__ import annotations

import contextlib
import textwrap
import uuid
from urllib.parse import quote

import psutil
import pytest
import requests
import sqlalchemy as sa

from devstack.airflow_stack import AirflowStack
from devstack.postgres import ensure_database, sqlalchemy_url

pytestmark = pytest.mark.e2e

DAG_ID = "airflow_stack_smoke"
DAG_FILE = textwrap.dedent(
    f'''
    import logging

    from airflow.sdk import dag, get_current_context, task

    log = logging.getLogger(__name__)


    @dag(dag_id="{DAG_ID}", schedule=None, catchup=False, tags=["e2e"])
    def smoke():
        @task
        def numbers() -> list[int]:
            return [1, 2, 3]

        @task
        def double(x: int) -> int:
            return 2 * x

        @task
        def total(values) -> int:
            result = sum(values)
            marker = get_current_context()["dag_run"].conf.get("marker")
            log.info("smoke total=%s marker=%s", result, marker)
            return result

        total(double.expand(x=numbers()))


    smoke()
    '''
)


@pytest.fixture(scope="module")
def stack(pg_admin_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("airflow_stack")
    dags = root / "dags"
    dags.mkdir()
    (dags / "smoke.py").write_text(DAG_FILE)
    db_name = f"airflow_stack_{uuid.uuid4().hex[:12]}"
    metadata_url = ensure_database(pg_admin_url, db_name).set(drivername="postgresql+psycopg2")

    airflow = AirflowStack(
        root / "home", metadata_url.render_as_string(hide_password=False), dags_folder=dags, parallelism=4
    )
    try:
        airflow.start()
        print(f"\nAirflowStack.start() took {airflow.start_seconds:.1f} s: {airflow.timings}")
        yield airflow
    finally:
        try:
            airflow.stop()
            print(f"\nAirflowStack timings: {airflow.timings}")
        finally:
            engine = sa.create_engine(sqlalchemy_url(pg_admin_url), isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            finally:
                engine.dispose()


@pytest.fixture(scope="module")
def marker():
    return f"marker-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def finished_run(stack, marker):
    stack.wait_for_dag(DAG_ID)
    stack.unpause(DAG_ID)
    run_id = stack.trigger(DAG_ID, conf={"marker": marker})
    state = stack.wait_for_run(DAG_ID, run_id, timeout=240)
    return run_id, state


def test_configuration_is_explicit_and_kept_per_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW_CONN_LEFTOVER", "http://example")
    url = "postgresql+psycopg2:///x"
    first = AirflowStack(tmp_path / "home", url, dags_folder=tmp_path, env={"AIRFLOW_VAR_A": "1"})
    second = AirflowStack(tmp_path / "home", url, dags_folder=tmp_path, users={"admin": "admin", "bob": "viewer"})
    env = first.environment
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert "AIRFLOW_CONN_LEFTOVER" not in env
    assert env["AIRFLOW_VAR_A"] == "1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{first.url}/execution/"
    assert len({first.api_port, first.worker_log_server_port, first.trigger_log_server_port}) == 3
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert env[key] and env[key] == second.environment[key]
    assert second.password("admin") == first.password("admin")
    assert second.password("bob") not in ("", first.password("admin"))
    assert second.environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,bob:viewer"
    with pytest.raises(ValueError):
        AirflowStack(tmp_path / "home", url, dags_folder=tmp_path, users={"x": "root"})


def test_a_fab_stack_runs_the_deployments_auth_manager_with_any_fab_role(tmp_path):
    url = "postgresql+psycopg2:///x"
    users = {"admin": "Admin", "automation": "IMRT Sync Automation"}
    stack = AirflowStack(tmp_path / "home", url, dags_folder=tmp_path, users=users, auth_manager="fab")
    env = stack.environment
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == "imrt_compat.fab_auth.ImrtFabAuthManager"
    assert not [key for key in env if "SIMPLE_AUTH_MANAGER" in key]
    assert stack.default_user == "admin" and stack.password("automation")
    assert not [value for value in env.values() if value == stack.password("automation")], "passwords stay out"
    with pytest.raises(ValueError):
        AirflowStack(tmp_path / "home", url, dags_folder=tmp_path, users={"admin": "Admin"}, auth_manager="ldap")
    with pytest.raises(ValueError):
        AirflowStack(tmp_path / "home", url, dags_folder=tmp_path, users={"a:b": "Admin"}, auth_manager="fab")


def test_processes_listen_on_loopback_only_and_carry_no_secret(stack):
    env = stack.environment
    secrets = {stack.password("admin"), env["AIRFLOW__API_AUTH__JWT_SECRET"], env["AIRFLOW__API__SECRET_KEY"]}
    listening = []
    for pid in stack.pids():
        proc = psutil.Process(pid)
        listening += [c.laddr for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert not secrets & set(proc.cmdline())
    assert {addr.ip for addr in listening} == {"127.0.0.1"}
    assert stack.api_port in {addr.port for addr in listening}


def test_rest_api_requires_a_token(stack):
    assert requests.get(f"{stack.url}/api/v2/dags", timeout=10).status_code == 401
    assert stack.api("GET", "/api/v2/dags", token="").status_code == 401
    assert stack.api("GET", "/api/v2/dags").status_code == 200


def test_triggered_run_succeeds(finished_run):
    _, state = finished_run
    assert state == "success"


def test_mapped_task_has_one_instance_per_element(stack, finished_run):
    run_id, _ = finished_run
    doubles = [ti for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "double"]
    assert sorted(ti["map_index"] for ti in doubles) == [0, 1, 2]
    assert {ti["state"] for ti in doubles} == {"success"}


def test_reducer_pushes_the_sum(stack, finished_run):
    run_id, _ = finished_run
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/total/xcomEntries/return_value"
    response = stack.api("GET", path)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == 12


def test_reducer_log_has_the_task_line(stack, finished_run, marker):
    run_id, _ = finished_run
    log = stack.task_log(DAG_ID, run_id, "total")
    assert f"smoke total=12 marker={marker}" in log


def test_stop_ends_every_process(stack, finished_run):
    processes = []
    for pid in stack.pids():
        with contextlib.suppress(psutil.NoSuchProcess):
            processes.append(psutil.Process(pid))  # remembers the start time: immune to pid reuse
    assert len(processes) >= 3
    stack.stop()
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append((proc.pid, proc.cmdline()))
        except psutil.NoSuchProcess:
            pass
    assert alive == []
    stack.stop()  # idempotent

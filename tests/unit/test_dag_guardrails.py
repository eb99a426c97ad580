"""The DAG's guardrails as the dag-processor parses them: timeouts, pool, asset, retries, alerts, the item_ids
schema; the settings snapshot that reads each variable once; the JWT secret make run generates."""

from __future__ import annotations

import collections
import re
import warnings
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from imrt_compat import alerts, guardrails
from imrt_compat import settings as imrt_settings
from imrt_compat.assets import ITEM_DATA

REPO_ROOT = Path(__file__).resolve().parents[2]
GITLAB_TASKS = ("list_ids", "sync", "dispatch_webhooks")


def parse_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["item_synchronization"]


@pytest.fixture(scope="module")
def dag():
    return parse_dag()


def test_timeouts_are_sized_for_20000_items(dag):
    assert dag.dagrun_timeout == timedelta(hours=3)
    timeouts = {task.task_id: task.execution_timeout for task in dag.tasks}
    assert timeouts == {
        "list_ids": timedelta(minutes=45),
        "sync": timedelta(minutes=30),
        "dispatch_webhooks": timedelta(minutes=60),
        "summary": timedelta(minutes=15),
    }
    assert all(timeout < dag.dagrun_timeout for timeout in timeouts.values())


def test_timeouts_come_from_the_imrt_configuration(monkeypatch):
    monkeypatch.setenv("AIRFLOW__IMRT__DAGRUN_TIMEOUT_MINUTES", "240")
    monkeypatch.setenv("AIRFLOW__IMRT__SYNC_TIMEOUT_MINUTES", "5")
    assert guardrails.timeouts().run == timedelta(hours=4)
    assert guardrails.timeouts().sync == timedelta(minutes=5)
    monkeypatch.setenv("AIRFLOW__IMRT__SYNC_TIMEOUT_MINUTES", "0")
    with pytest.raises(ValueError, match=r"\[imrt\] sync_timeout_minutes must be a positive number of minutes"):
        guardrails.timeouts()


def test_gitlab_tasks_share_the_gitlab_pool(dag):
    pools = {task.task_id: task.pool for task in dag.tasks}
    assert {pools[t] for t in GITLAB_TASKS} == {"imrt_gitlab"}
    assert pools["summary"] == "default_pool"


def test_retries_back_off_exponentially_in_the_3x_form(dag):
    for task in dag.tasks:
        assert task.retry_exponential_backoff == 2.0
        assert task.retry_delay == timedelta(seconds=30) and task.max_retry_delay == timedelta(minutes=10)


def test_summary_updates_the_item_data_asset(dag):
    outlets = {task.task_id: list(task.outlets) for task in dag.tasks}
    assert outlets == {"list_ids": [], "sync": [], "dispatch_webhooks": [], "summary": [ITEM_DATA]}
    assert ITEM_DATA.name == "imrt_item_data"


def test_item_ids_takes_integers_and_the_trigger_forms_lines():
    """REST callers send integers; the trigger form sends its lines, one id per line, blank ones included."""
    from airflow.sdk.exceptions import ParamValidationError

    item_ids = parse_dag().params.get_param("item_ids")
    assert item_ids.resolve([12, 7]) == [12, 7]
    assert item_ids.resolve(None) is None
    assert item_ids.resolve(["200005", " 200006 ", ""]) == ["200005", " 200006 ", ""]
    for bad in (["abc"], ["12 13"], ["12,13"], ["0"], ["-4"], [1.5], [0], [True], "12", [{"id": 1}]):
        with pytest.raises(ParamValidationError, match=re.escape(repr(bad[0] if isinstance(bad, list) else bad))):
            item_ids.resolve(bad)


def test_the_trigger_form_renders_item_ids_as_one_id_per_line():
    """Airflow 3.3's trigger form (FieldSelector) renders an array whose items have no type, or type string, as a
    text box of one value per line; any other array is a JSON editor, where `200005` cannot be submitted."""
    schema = parse_dag().params.get_param("item_ids").schema
    assert [t for t in schema["type"] if t != "null"] == ["array"]  # one non-null type: not the multi-type box
    assert schema["items"].get("type") in (None, "string")
    assert "enum" not in schema and "examples" not in schema  # else a multi-select
    assert "one per line" in parse_dag().params.get_param("item_ids").description


def test_the_failure_notifier_is_smtp_once_a_recipient_is_configured(monkeypatch):
    monkeypatch.delenv("AIRFLOW__IMRT__ALERT_EMAIL_TO", raising=False)
    assert parse_dag().on_failure_callback in (None, [])
    monkeypatch.setenv("AIRFLOW__IMRT__ALERT_EMAIL_TO", "ops@example.org, oncall@example.org")
    (notifier,) = parse_dag().on_failure_callback
    assert isinstance(notifier, alerts.RunFailureNotifier)
    assert notifier.notifier_class == "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
    assert notifier.notifier_kwargs["to"] == ["ops@example.org", "oncall@example.org"]
    assert notifier.notifier_kwargs["smtp_conn_id"] == "smtp_default"


def test_any_notifier_class_by_configuration(monkeypatch):
    monkeypatch.setenv("AIRFLOW__IMRT__FAILURE_NOTIFIER", "airflow.providers.standard.notifications.x.Y")
    monkeypatch.setenv("AIRFLOW__IMRT__FAILURE_NOTIFIER_KWARGS", '{"text": "{{ imrt_exit_message }}"}')
    notifier = alerts.failure_notifier()
    assert notifier.notifier_class == "airflow.providers.standard.notifications.x.Y"
    assert notifier.notifier_kwargs == {"text": "{{ imrt_exit_message }}"}
    monkeypatch.setenv("AIRFLOW__IMRT__FAILURE_NOTIFIER_KWARGS", "[1]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        alerts.failure_notifier()


def test_run_url_quotes_the_run_id(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org/")
    assert alerts.run_url("item_synchronization", "manual__2026-01-01T09:00:00+00:00") == (
        "https://airflow.example.org/dags/item_synchronization/runs/manual__2026-01-01T09%3A00%3A00%2B00%3A00"
    )


# --------------------------------------------------------------------------- each variable read once per task


@pytest.fixture
def variable_reads(monkeypatch):
    """Counts the reads of each variable, passing every read on to Airflow."""
    from airflow.sdk import Variable

    reads: collections.Counter[str] = collections.Counter()
    real_get = Variable.get.__func__

    def counting_get(cls, key, *args, **kwargs):
        reads[key] += 1
        return real_get(cls, key, *args, **kwargs)

    monkeypatch.setattr(Variable, "get", classmethod(counting_get))
    return reads


def test_a_task_reads_each_variable_once(monkeypatch, variable_reads):
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_GITLAB_GROUP", "iat-dev")
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_WEBHOOK_URL", "https://imrt.example.org/webHook")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GITLAB_DEFAULT",
        '{"conn_type": "http", "host": "https://gitlab.example.org", "password": "glpat-x"}',
    )
    values = imrt_settings.read_variables()
    for _ in range(2):  # what list_ids does on the real-time path: settings, GitLab, and two engines
        imrt_settings.sync_settings(values)
        imrt_settings.gitlab_settings(values)
        imrt_settings.receiver_settings(values)
    assert variable_reads and set(variable_reads.values()) == {1}
    assert set(variable_reads) == set(imrt_settings.DEFAULTS) - {"imrt_db_conn_id"}
    assert values["imrt_gitlab_group"] == "iat-dev" and values["imrt_map_bound"] == "256"


def test_without_a_snapshot_each_call_reads_again(monkeypatch, variable_reads):
    """The counter sees every read: the same calls without a shared snapshot read again."""
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_GITLAB_GROUP", "iat-dev")
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_WEBHOOK_URL", "https://imrt.example.org/webHook")
    imrt_settings.sync_settings()
    imrt_settings.sync_settings()
    assert variable_reads["imrt_gitlab_group"] == 2


# --------------------------------------------------------------------------- the JWT secret of make run


def hs512_warnings(secret: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = jwt.encode({"sub": "admin"}, secret, algorithm="HS512")
        jwt.decode(token, secret, algorithms=["HS512"])
    return [str(w.message) for w in caught]


def test_make_run_generates_a_jwt_secret_long_enough_for_hs512(tmp_path):
    from devstack.airflow_stack import AirflowStack

    stack = AirflowStack(tmp_path / "home", "sqlite:////nonexistent/airflow.db", dags_folder=tmp_path)
    secret = stack.environment["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(secret.encode()) >= 64
    assert hs512_warnings(secret) == []
    assert hs512_warnings(secret[:43]), "a 43-byte key must warn, or this test proves nothing"


def test_a_short_jwt_secret_from_an_older_home_is_replaced(tmp_path):
    import json

    from devstack.airflow_stack import AirflowStack

    home = tmp_path / "home"
    home.mkdir()
    (home / "devstack-secrets.json").write_text(json.dumps({"jwt_secret": "x" * 43, "api_secret_key": "kept"}))
    stack = AirflowStack(home, "sqlite:////nonexistent/airflow.db", dags_folder=tmp_path)
    assert len(stack.environment["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64
    assert stack.environment["AIRFLOW__API__SECRET_KEY"] == "kept"


def test_hook_events_have_their_own_dag_with_the_same_tasks(dag):
    """Pushes are synced while a bank-wide run is in progress: the receiver's runs belong to another DAG (a few runs
    at once, so that a slow one does not hold the next push; bank-wide runs stay one at a time), unscheduled, unpaused
    when created and out of the bank-wide runs' pool, with the same tasks and wiring."""
    from airflow.dag_processing.dagbag import DagBag

    from imrt_sync import EVENTS_DAG_ID

    events = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags[EVENTS_DAG_ID]
    assert events.schedule is None and dag.schedule == "0 9 * * *"
    assert (events.max_active_runs, dag.max_active_runs) == (4, 1)
    assert events.is_paused_upon_creation is False and dag.is_paused_upon_creation is None
    assert events.params == {} and set(dag.params) == {"mode", "item_ids", "dry_run"}
    assert {t.task_id: sorted(t.downstream_task_ids) for t in events.tasks} == {
        t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks
    }
    assert {t.pool for t in events.tasks} == {"default_pool"}

"""Alerts and metrics of real ``dag.test()`` runs: a failed run's alert arrives at a local SMTP server (aiosmtpd)
with the exit message and the run's URL; a successful run's metrics arrive at a local StatsD UDP listener, its
tasks read each variable once, and it updates the ``imrt_item_data`` asset."""

from __future__ import annotations

import collections
import email
import json
import socket
import threading
from email import policy
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from e2e_helpers import dag_test_environment, load_dag, reset_mirror_listener, run_dag, wait_until, xcom

from imrt_sync.schema_migrations import prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank

pytestmark = pytest.mark.e2e

GROUP = "iat-alerts"
TOKEN = "glpat-alerts-secret-token"
BANK_SIZE = 4
BASE_URL = "https://airflow.example.org"


@pytest.fixture
def bank_server(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    generate_bank(bank, GROUP, count=BANK_SIZE, seed=11)
    with ItemBankServer(bank, host="127.0.0.1", port=0, tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def environment(monkeypatch, bank_server, imrt_db_url, imrt_engine, tmp_path):
    prepare_database(imrt_engine)  # migrations and the legacy bootstrap: runs issue no DDL

    def configure(token: str = TOKEN, **extra) -> None:
        env = dag_test_environment(
            gitlab_url=bank_server.url,
            token=token,
            group=GROUP,
            imrt_url=imrt_db_url,
            git_cache_dir=tmp_path / "git-cache",
        )
        for key, value in {**env, "AIRFLOW__API__BASE_URL": BASE_URL, **extra}.items():
            monkeypatch.setenv(key, value)
        reset_mirror_listener()

    return configure


class Mailbox:
    """What a local aiosmtpd server received."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    with socket.socket() as probe:  # the Controller checks its port by connecting to it: it needs a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def test_a_failed_run_mails_its_exit_message_and_url(environment, smtp_server):
    mailbox, port = smtp_server
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 1},
    }
    environment(
        token="glpat-wrong-token",  # list_ids fails: the item bank answers 401
        AIRFLOW_CONN_SMTP_DEFAULT=json.dumps(smtp),
        AIRFLOW__IMRT__ALERT_EMAIL_TO="ops@example.org",
        AIRFLOW__IMRT__ALERT_EMAIL_FROM="airflow@example.org",
    )
    dag = load_dag()  # parsed with the alert configuration, as the dag-processor would
    dag_run, _ = run_dag(dag)
    assert dag_run.state == "failed"
    exit_message = xcom(dag_run, "summary", "outcome")["message"]
    assert exit_message.startswith("Listing the item bank failed")

    (message,) = wait_until(lambda: mailbox.messages, 30, "the failure alert")
    body = message.get_body(("html", "plain")).get_content()
    assert message["To"] == "ops@example.org" and message["From"] == "airflow@example.org"
    assert dag_run.run_id in message["Subject"]
    run_url = f"{BASE_URL}/dags/item_synchronization/runs/{quote(dag_run.run_id, safe='')}"
    assert run_url in body
    assert exit_message.replace("'", "&#39;").replace('"', "&#34;") in body or exit_message in body
    assert TOKEN not in body and "glpat-wrong-token" not in body


class StatsdListener:
    """A UDP socket receiving StatsD lines (``name:value|type``)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())

    def metric(self, name: str) -> list[str]:
        return [line.split(":", 1)[1] for line in list(self.lines) if line.split(":", 1)[0] == name]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def statsd(monkeypatch):
    """Airflow's metrics on, sent to a local listener; the SDK's Stats set up as the task runner sets it up in a
    task process (``task_runner.main``: ``stats.initialize`` from ``[metrics]``)."""
    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk.observability.metrics import stats_utils

    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    yield listener
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=True)
    listener.close()


@pytest.fixture
def variable_reads(monkeypatch):
    """Reads of each variable by task id, every read passed on to Airflow."""
    from airflow.sdk import Variable, get_current_context

    reads: collections.Counter[tuple[str, int, str]] = collections.Counter()
    real_get = Variable.get.__func__

    def counting_get(cls, key, *args, **kwargs):
        try:
            ti = get_current_context()["ti"]
            reads[(ti.task_id, ti.map_index, key)] += 1
        except Exception:
            pass
        return real_get(cls, key, *args, **kwargs)

    monkeypatch.setattr(Variable, "get", classmethod(counting_get))
    return reads


def test_a_run_reports_metrics_reads_each_variable_once_and_updates_the_asset(
    environment, statsd, variable_reads, imrt_engine
):
    environment()
    dag_run, instances = run_dag(load_dag())
    assert dag_run.state == "success", instances

    expected = {
        "airflow.imrt.items.synced": f"{BANK_SIZE}|c",
        "airflow.imrt.items.failed": "0|c",
        "airflow.imrt.items.deleted": "0|c",
        "airflow.imrt.webhook_backlog.pending": "0|g",
    }
    wait_until(
        lambda: all(statsd.metric(name) for name in [*expected, "airflow.imrt.run.duration"]),
        10,
        f"the run's metrics (received: {statsd.lines})",
    )
    for name, value in expected.items():
        assert statsd.metric(name) == [value], (name, statsd.lines)
    (duration,) = statsd.metric("airflow.imrt.run.duration")
    assert duration.endswith("|ms") and float(duration.split("|")[0]) > 0
    assert statsd.metric("airflow.imrt.webhook_backlog.oldest_age_seconds") == ["0.0|g"]

    tasks = {task for task, _, _ in variable_reads}
    assert tasks == {"list_ids", "sync", "dispatch_webhooks", "summary"}
    assert set(variable_reads.values()) == {1}, {k: n for k, n in variable_reads.items() if n > 1}

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.scalars(
            sa.select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "imrt_item_data", AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        extras = [event.extra for event in events]
    assert extras == [{"run_id": dag_run.run_id, "dry_run": False, "synced": BANK_SIZE, "deleted": 0, "failed": 0}]


def test_airflow_jobs_create_the_gitlab_pool_once_and_keep_its_slots():
    from airflow.jobs.job import Job
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    from imrt_compat import guardrails, settings

    load_dag()  # migrates the metadata database
    with create_session() as session:
        session.execute(sa.delete(Pool).where(Pool.pool == "imrt_gitlab"))
    guardrails.on_starting(component=Job())
    assert Pool.get_pool("imrt_gitlab").slots == settings.imrt_default("gitlab_pool_slots")
    Pool.create_or_update_pool("imrt_gitlab", 3, "set by an operator", include_deferred=False)
    assert guardrails.ensure_gitlab_pool() is False
    assert Pool.get_pool("imrt_gitlab").slots == 3

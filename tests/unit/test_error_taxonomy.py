"""One error taxonomy: which failures each step retries, decided by ``imrt_sync.errors.is_transient`` alone.

Every step is driven through the functions the DAG's tasks call (``dag_tasks.listing_failed``, ``pipeline.sync_unit``
then ``dag_tasks.report_unit``, ``pipeline.dispatch_webhooks`` then ``dag_tasks.report_webhooks``, the services
of ``dag_tasks.task_run``), with GitLab, the database and the task context stubbed; a step "retries" when its
task ends with anything but ``AirflowFailException``, which Airflow does not retry. GitLab's errors are the real
client's, raised from stubbed HTTP answers. No database, no GitLab.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import requests
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from imrt_compat import dag_tasks
from imrt_compat.settings import SettingsError
from imrt_compat.task_contract import LISTING_FAILURE
from imrt_sync import pipeline
from imrt_sync.absence import AccessNotProven, ListedButNotFound
from imrt_sync.config import GitLabSettings, InsecureGitLabURL, RunParams
from imrt_sync.contracts import RunContext
from imrt_sync.errors import ItemValidationError
from imrt_sync.gitlab import GitLabClient, GitLabError
from imrt_sync.gitrepo import GitFetchError, RepositoryNotFound
from imrt_sync.pipeline import webhooks as pipeline_webhooks
from imrt_sync.schema_migrations import SchemaNotReady
from imrt_sync.scope import GroupScope
from imrt_sync.store import ProjectLockedError

INCLUDE = Path(__file__).resolve().parents[2] / "include"
GITLAB = "https://gitlab.example.org"
PROJECT = 200005
SCOPE = GroupScope("iat")

# ------------------------------------------------------------------------------------------------ GitLab's errors


def gitlab_failure(answer: Exception | tuple[int, object, dict], call=lambda gitlab: gitlab.hooks(PROJECT)):
    """The error the GitLab client raises when every HTTP request gets ``answer``: an exception (no answer), or
    ``(status, body, headers)``."""

    def request(session, method, url, **kwargs):
        if isinstance(answer, Exception):
            raise answer
        return http_answer(method, url, *answer)

    settings = GitLabSettings(base_url=GITLAB, token="glpat-taxonomy-token")
    with (
        mock.patch.object(requests.Session, "request", request),
        GitLabClient(settings) as gitlab,
        pytest.raises(GitLabError) as raised,
    ):
        call(gitlab)
    return raised.value


def http_answer(method: str, url: str, status: int, body, headers: dict) -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer.url, answer.reason = status, url, "Reason"
    answer.headers.update(headers)
    answer.raw = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    answer.request = requests.Request(method, url).prepare()
    return answer


def answered(status: int, message: str = "") -> Callable[[], GitLabError]:
    return lambda: gitlab_failure((status, {"message": message or f"{status} Error"}, {}))


HOOK = {"id": 1, "url": "https://imrt.example.org/webHook"}
ELSEWHERE = '<https://elsewhere.example.org/api/v4/projects/200005/hooks?page=2>; rel="next"'

# ------------------------------------------------------------------------------------------------ the table

ERRORS: dict[str, Callable[[], BaseException]] = {
    "item.json invalid": lambda: ItemValidationError(PROJECT, "item.json is not valid JSON: Expecting value"),
    "GitLab 401": answered(401, "401 Unauthorized"),
    "GitLab 403": answered(403, "403 Forbidden"),
    "GitLab 404": answered(404, "404 Project Not Found"),
    "GitLab 409": answered(409, "409 Conflict"),
    "GitLab 429 after the client's retries": answered(429),
    "GitLab 500 after the client's retries": answered(500),
    "GitLab 502 after the client's retries": answered(502),
    "GitLab 503 after the client's retries": answered(503),
    "GitLab 504 after the client's retries": answered(504),
    "GitLab not reachable": lambda: gitlab_failure(requests.ConnectionError("connection refused")),
    "GitLab timed out": lambda: gitlab_failure(requests.ReadTimeout("read timed out")),
    "GitLab certificate does not verify": lambda: gitlab_failure(requests.exceptions.SSLError("verify failed")),
    "GitLab redirect": lambda: gitlab_failure((302, {}, {"Location": f"{GITLAB}/users/sign_in"})),
    "GitLab answer not JSON": lambda: gitlab_failure((200, b"<html>sign in</html>", {})),
    "GitLab page shorter than X-Total": lambda: gitlab_failure((200, [HOOK], {"X-Total": "2"})),
    "GitLab pagination link to another host": lambda: gitlab_failure((200, [HOOK], {"Link": ELSEWHERE})),
    "group not readable": lambda: gitlab_failure(
        (404, {"message": "404 Group Not Found"}, {}), lambda gitlab: gitlab.group(SCOPE.group)
    ),
    "access to every project not proven": lambda: AccessNotProven(SCOPE, "imrt-sync is not a member of group iat"),
    "listed but answering 404": lambda: ListedButNotFound(PROJECT, SCOPE),
    "run refused": lambda: pipeline.RunRefused("GitLab group iat is not readable; deleted nothing"),
    "setting missing": lambda: SettingsError("set the Airflow variable imrt_gitlab_group"),
    "plain http GitLab URL": lambda: InsecureGitLabURL("the GitLab URL is plain http://"),
    "schema not ready": lambda: SchemaNotReady("run python -m imrt_compat.migrate upgrade"),
    "project lock held": lambda: ProjectLockedError(f"project {PROJECT} is locked by another writer"),
    "git fetch failed": lambda: GitFetchError("git fetch failed (exit 128): the remote end hung up"),
    "git repository not found": lambda: RepositoryNotFound("git ls-remote failed (HTTP 404)"),
    "database unreachable": lambda: sa.exc.OperationalError("SELECT 1", {}, OSError("connection refused")),
    "requests error outside the client": lambda: requests.ConnectionError("connection reset"),
    "unexpected bug": lambda: KeyError("default_branch"),
}

RETRY, FAIL = True, False
STEPS = ("listing", "item sync", "item deletion", "hook repair", "task services")
# Whether each step retries each error: list_ids; a sync instance, for an item to sync and for one to delete;
# dispatch_webhooks, for a hook to fix; any task whose services fail to open (e.g. on its settings). Before the
# taxonomy, list_ids and sync retried every GitLab error but lost access, and the tasks after list_ids retried a bad
# setting: a GitLab answer that will not change (401, 403, 404, a redirect, a certificate that does not verify, an
# answer that is not JSON, a link to another host) and a bad setting now fail at once in every step.
RETRIED: dict[str, tuple[bool, bool, bool, bool, bool]] = {
    #                                           listing  item sync  item deletion  hook repair  task services
    "item.json invalid": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab 401": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab 403": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab 404": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab 409": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab 429 after the client's retries": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab 500 after the client's retries": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab 502 after the client's retries": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab 503 after the client's retries": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab 504 after the client's retries": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab not reachable": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab timed out": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab certificate does not verify": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab redirect": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab answer not JSON": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "GitLab page shorter than X-Total": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "GitLab pagination link to another host": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "group not readable": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "access to every project not proven": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "listed but answering 404": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "run refused": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "setting missing": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "plain http GitLab URL": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "schema not ready": (FAIL, FAIL, FAIL, FAIL, FAIL),
    "project lock held": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "git fetch failed": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "git repository not found": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "database unreachable": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "requests error outside the client": (RETRY, RETRY, RETRY, RETRY, RETRY),
    "unexpected bug": (RETRY, RETRY, RETRY, RETRY, RETRY),
}
CASES = [
    (kind, step, retried) for kind, by_step in RETRIED.items() for step, retried in zip(STEPS, by_step, strict=True)
]

# ------------------------------------------------------------------------------------------------ the steps


class XComs:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = value


class FailingGitLab:
    """A GitLab whose reads of a project or of its hooks fail, with ``errors`` in turn."""

    def __init__(self, *errors: BaseException):
        self.errors = iter(errors)

    def project(self, project_id: int):
        raise next(self.errors)

    def hooks(self, project_id: int):
        raise next(self.errors)


class NothingRecorded:
    """``WebhookRegistry`` without a database: no hook recorded."""

    def __init__(self, engine) -> None:
        pass

    def recorded(self, project_ids=None) -> dict:
        return {}

    def count_not_on(self, fingerprint: str) -> int:
        return 0


class NoItemLocks:
    """``ItemStore`` without a database, as far as these steps get before their error: item locks that always come."""

    @staticmethod
    def item_lock(project_id: int):
        return nullcontext()


class ServicesWithoutDatabase(pipeline.Services):
    @property
    def store(self):
        return NoItemLocks()


def services(*errors: BaseException) -> pipeline.Services:
    settings = SimpleNamespace(scope=SCOPE, webhook_url=HOOK["url"], webhook_secret="", concurrency=1)
    return ServicesWithoutDatabase(settings, FailingGitLab(*errors), engine=None, git_access=None)


def listing(error: BaseException) -> None:
    dag_tasks.listing_failed(error)


def item_sync(error: BaseException) -> None:
    outcome = pipeline.sync_unit(services(error), {"label": "one", "sync": [PROJECT], "delete": []}, RunParams())
    assert list(outcome["failed"]) == [str(PROJECT)]
    dag_tasks.report_unit(outcome)


def item_deletion(error: BaseException) -> None:
    outcome = pipeline.sync_unit(services(error), {"label": "one", "sync": [], "delete": [PROJECT]}, RunParams())
    assert list(outcome["failed"]) == [str(PROJECT)]
    dag_tasks.report_unit(outcome)


def hook_repair(error: BaseException) -> None:
    outcome = pipeline.dispatch_webhooks(services(error), {"missing_webhook": [PROJECT]}, RunParams())
    assert list(outcome["failed"]) == [str(PROJECT)]
    dag_tasks.report_webhooks(outcome)


def task_services(error: BaseException) -> None:
    def read_settings():
        raise error

    with (
        mock.patch.object(dag_tasks, "current_run", lambda: RunContext("manual__1", RunParams())),
        mock.patch.object(dag_tasks, "task_database", lambda values: nullcontext()),
        mock.patch.object(dag_tasks, "settings_reader", lambda values: read_settings),
        dag_tasks.task_run() as task,
    ):
        assert task.services is not None  # opening them reads the settings


STEP = {
    "listing": listing,
    "item sync": item_sync,
    "item deletion": item_deletion,
    "hook repair": hook_repair,
    "task services": task_services,
}


@pytest.fixture(autouse=True)
def task_context(monkeypatch):
    monkeypatch.setattr(pipeline_webhooks, "WebhookRegistry", NothingRecorded)
    monkeypatch.setattr(dag_tasks, "get_current_context", lambda: {"ti": XComs()})


def retried(task_end: Callable[[], None]) -> bool:
    """Whether Airflow retries a task that ends this way: unless it ends with AirflowFailException."""
    with pytest.raises(Exception) as ended:
        task_end()
    return not isinstance(ended.value, AirflowFailException)


def test_the_table_has_a_row_for_every_error_kind():
    assert list(RETRIED) == list(ERRORS)


@pytest.mark.parametrize(("kind", "step", "expected"), CASES, ids=[f"{step}: {kind}" for kind, step, _ in CASES])
def test_which_errors_each_step_retries(kind, step, expected):
    error = ERRORS[kind]()
    assert retried(lambda: STEP[step](error)) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("GitLab 403", "item.json invalid", FAIL),
        ("GitLab 403", "GitLab 503 after the client's retries", RETRY),
        ("project lock held", "item.json invalid", RETRY),
    ],
)
def test_a_unit_is_retried_when_any_of_its_items_failures_may_pass(first, second, expected):
    """Items that landed change nothing when the instance runs again."""
    unit = {"label": "1..2 (2 items)", "sync": [1, 2], "delete": []}
    outcome = pipeline.sync_unit(services(ERRORS[first](), ERRORS[second]()), unit, RunParams())
    assert list(outcome["failed"]) == ["1", "2"]
    assert retried(lambda: dag_tasks.report_unit(outcome)) is expected


def test_a_transient_listing_failure_is_raised_as_it_is_for_airflow_and_published_for_the_summary(monkeypatch):
    ti = XComs()
    monkeypatch.setattr(dag_tasks, "get_current_context", lambda: {"ti": ti})
    error = answered(503, "503 Service Unavailable")()
    with pytest.raises(GitLabError) as raised:
        dag_tasks.listing_failed(error)
    assert raised.value is error
    assert ti.pushed == {
        LISTING_FAILURE.key: {
            "error": f"GitLab GET /api/v4/projects/{PROJECT}/hooks answered 503: 503 Service Unavailable"
        }
    }


def test_every_domain_error_class_is_under_the_one_base():
    """Each exception class of imrt_sync and imrt_compat derives from ImrtError, PermanentError or TransientError,
    directly or through another domain error."""
    bases = exception_classes()
    under = {"ImrtError", "PermanentError", "TransientError"}
    while grown := {name for name, names in bases.items() if name not in under and under & set(names)}:
        under |= grown
    assert len(bases) >= 15
    assert sorted(set(bases) - under - {"ImrtError"}) == []


def exception_classes() -> dict[str, list[str]]:
    """The classes of the two packages that derive from an exception, by name, with their bases' names."""
    classes = {}
    for package in ("imrt_sync", "imrt_compat"):
        for path in sorted((INCLUDE / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    classes[node.name] = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
    errors = {
        name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
    }
    while grown := {name for name, names in classes.items() if name not in errors and errors & set(names)}:
        errors |= grown
    return {name: names for name, names in classes.items() if name in errors}

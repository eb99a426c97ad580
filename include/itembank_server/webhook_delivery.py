"""Project webhooks and system hooks: GitLab's payloads POSTed by a worker pool after the change that fired them.

- Delivery (``WebHookService``): https://docs.gitlab.com/user/project/integrations/webhooks/ — a JSON POST with
  ``Content-Type``, ``User-Agent: GitLab/<version>``, ``Idempotency-Key``, ``X-Gitlab-Event``,
  ``X-Gitlab-Webhook-UUID``, ``X-Gitlab-Instance``, ``X-Gitlab-Event-UUID`` and ``X-Gitlab-Token`` when the hook has a
  secret token (https://docs.gitlab.com/user/project/integrations/webhooks/#delivery-headers). Requests time out after
  the server's webhook timeout (GitLab's default: 10 s,
  https://docs.gitlab.com/user/gitlab_com/#webhooks). TLS certificates are verified when the hook's
  ``enable_ssl_verification`` is on (https://docs.gitlab.com/user/project/integrations/webhooks/#configure-a-webhook-in-gitlab).
  A 2xx or 3xx answer is a success, anything else (another status, a timeout, a connection or TLS error) a failure.
- Every request is recorded like GitLab's request history, the secret token shown as ``[REDACTED]``
  (https://docs.gitlab.com/user/project/integrations/webhooks/#view-webhook-request-history).
- Auto-disabling (``WebHooks::AutoDisabling``, project hooks only):
  https://docs.gitlab.com/user/project/integrations/webhooks/#auto-disabled-webhooks — after 4 consecutive failures a
  hook is temporarily disabled for 1 minute, doubling on each further failure up to 1 day; the 40th consecutive
  failure disables it permanently. A success resets the count. A disabled hook is not called; a test request
  (https://docs.gitlab.com/api/project_webhooks/#trigger-a-test-project-webhook) is sent anyway and re-enables the
  hook when it succeeds (https://docs.gitlab.com/user/project/integrations/webhooks/#re-enable-disabled-webhooks).
- System hooks (https://docs.gitlab.com/administration/system_hooks/): configured when the server starts, they get
  ``project_create``, ``project_destroy``, ``project_rename``, ``project_transfer`` and, when their ``push_events`` is
  on, the push payload, with ``X-Gitlab-Event: System Hook``.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import requests

from . import webhook_payloads
from .webhook_store import WebhookState, timestamp

logger = logging.getLogger(__name__)

GITLAB_VERSION = "18.2.1"
DEFAULT_TIMEOUT = 10.0
REDACTED = "[REDACTED]"
TEMPORARILY_DISABLED_FAILURE_THRESHOLD = 3
PERMANENTLY_DISABLED_FAILURE_THRESHOLD = 39
INITIAL_BACKOFF = 60.0
MAX_BACKOFF = 86400.0
BACKOFF_GROWTH_FACTOR = 2.0
PROJECT_EVENTS = ("project_create", "project_destroy", "project_rename", "project_transfer")
_SYSTEM_HOOK_OPTIONS = {"token", "push_events", "tag_push_events", "enable_ssl_verification"}


@dataclass(frozen=True)
class SystemHook:
    """A system hook configured at server start (https://docs.gitlab.com/administration/system_hooks/)."""

    url: str
    token: str | None = field(default=None, repr=False)
    push_events: bool = True
    tag_push_events: bool = False
    enable_ssl_verification: bool = True
    id: int = 0

    @classmethod
    def parse(cls, spec: str) -> SystemHook:
        """``URL[,token=T][,push_events=false][,tag_push_events=true][,enable_ssl_verification=false]``."""
        url, *options = spec.split(",")
        values: dict[str, object] = {}
        for option in options:
            name, sep, value = option.partition("=")
            if not sep or name not in _SYSTEM_HOOK_OPTIONS:
                raise ValueError(
                    f"unknown system hook option {name!r} (expected one of {sorted(_SYSTEM_HOOK_OPTIONS)})"
                )
            values[name] = value if name == "token" else _parse_flag(name, value)
        return cls(url, **values)  # type: ignore[arg-type]


def _parse_flag(name: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


# -- auto-disabling (WebHooks::AutoDisabling) ------------------------------------------------------------------


def temporarily_disabled(state: WebhookState, now: float) -> bool:
    return (
        state.disabled_until is not None
        and state.disabled_until >= now
        and TEMPORARILY_DISABLED_FAILURE_THRESHOLD < state.recent_failures <= PERMANENTLY_DISABLED_FAILURE_THRESHOLD
    )


def permanently_disabled(state: WebhookState) -> bool:
    return state.recent_failures > PERMANENTLY_DISABLED_FAILURE_THRESHOLD


def executable(state: WebhookState, now: float) -> bool:
    return not temporarily_disabled(state, now) and not permanently_disabled(state)


def alert_status(state: WebhookState, now: float) -> str:
    if temporarily_disabled(state, now):
        return "temporarily_disabled"
    if permanently_disabled(state):
        return "disabled"
    return "executable"


def after_failure(state: WebhookState, now: float) -> WebhookState:
    """``backoff!``: count the failure; past the grace threshold, disable for a growing period."""
    if not executable(state, now):
        return state
    failures = min(max(state.recent_failures + 1, 1), PERMANENTLY_DISABLED_FAILURE_THRESHOLD + 1)
    if failures <= TEMPORARILY_DISABLED_FAILURE_THRESHOLD:
        return replace(state, recent_failures=failures)
    exponent = state.recent_failures - TEMPORARILY_DISABLED_FAILURE_THRESHOLD
    backoff = min(max(INITIAL_BACKOFF * BACKOFF_GROWTH_FACTOR**exponent, INITIAL_BACKOFF), MAX_BACKOFF)
    return WebhookState(failures, now + backoff)


def after_success(state: WebhookState) -> WebhookState:
    """``enable!``."""
    return WebhookState()


# -- deliveries --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One request to send: to a project hook (``hook_id``) or a system hook (``system_hook_id``)."""

    url: str
    token: str | None = field(repr=False)
    verify_tls: bool
    event: str  # the X-Gitlab-Event value
    trigger: str  # GitLab's hook name: push_hooks, tag_push_hooks, system_hooks
    payload: Mapping
    project_id: int | None
    hook_id: int | None = None
    system_hook_id: int | None = None
    force: bool = False  # a test request: sent even if the hook is disabled


class WebhookDispatcher:
    """Fires GitLab's hooks for changes made through the server's front ends; delivery runs on worker threads."""

    def __init__(
        self,
        bank,
        base_url: Callable[[], str],
        system_hooks: Sequence[SystemHook | str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: str | None = None,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ):
        self.bank = bank
        self._base_url = base_url
        self.system_hooks = [
            replace(SystemHook.parse(hook) if isinstance(hook, str) else hook, id=number)
            for number, hook in enumerate(system_hooks, start=1)
        ]
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.clock = clock
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"itembank-hooks-{n}", daemon=True) for n in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    # -- what the front ends call ----------------------------------------------------------------------------

    def push(self, project: Mapping, user: Mapping, before: str, after: str, ref: str) -> None:
        """A push moved ``ref`` of ``project`` from ``before`` to ``after`` (40 zeros: created / deleted)."""
        self._submit(lambda: self._fire_push(dict(project), dict(user), before, after, ref))

    def project_event(
        self,
        event_name: str,
        project: Mapping,
        user: Mapping | None,
        *,
        old_path_with_namespace: str | None = None,
    ) -> None:
        """``project_create``, ``project_destroy``, ``project_rename`` or ``project_transfer`` for the system hooks."""
        if event_name not in PROJECT_EVENTS:
            raise ValueError(f"unknown project event {event_name!r}")
        owners = [dict(user)] if user else []
        payload = webhook_payloads.project_event_payload(event_name, project, owners, old_path_with_namespace)
        for hook in self.system_hooks:
            self._submit(lambda hook=hook: self._deliver(self._system_delivery(hook, payload, project["id"])))

    def test_hook(self, project: Mapping, hook: Mapping, user: Mapping) -> dict:
        """Send a push test request to ``hook`` now, even if it is disabled; return its record."""
        payload = webhook_payloads.sample_push_payload(self.bank.repo_path(project), project, user, self._base_url())
        delivery = self._project_delivery(hook, payload, "push_hooks", force=True)
        return self._deliver(delivery)

    # -- what tests and the REST API read --------------------------------------------------------------------

    def hook_status(self, hook: Mapping) -> tuple[str, str | None]:
        """The hook's ``alert_status`` and ``disabled_until`` as GitLab's API shows them."""
        state = self.bank.hook_state(hook["id"])
        until = state.disabled_until
        shown_until = timestamp(datetime.fromtimestamp(until, UTC)) if until is not None else None
        return alert_status(state, self.clock()), shown_until

    def deliveries(
        self, *, hook_id: int | None = None, system_hook_id: int | None = None, project_id: int | None = None
    ) -> list[dict]:
        """Recorded requests, oldest first (request headers with the token value redacted)."""
        return self.bank.hook_deliveries(hook_id=hook_id, system_hook_id=system_hook_id, project_id=project_id)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no delivery is queued or running; False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop delivering: queued deliveries are dropped, running ones finish within their timeout."""
        self._closed.set()
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    # -- the worker pool -------------------------------------------------------------------------------------

    def _submit(self, job: Callable[[], None]) -> None:
        if self._closed.is_set():
            return
        with self._idle:
            self._pending += 1
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if not self._closed.is_set():
                    job()
            except Exception:
                logger.exception("hook job failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    # -- building deliveries ---------------------------------------------------------------------------------

    def _fire_push(self, project: dict, user: dict, before: str, after: str, ref: str) -> None:
        repo = self.bank.repo_path(project)
        payload = webhook_payloads.push_payload(repo, project, user, before, after, ref, self._base_url())
        tag = ref.startswith("refs/tags/")
        scope, trigger = ("tag_push_events", "tag_push_hooks") if tag else ("push_events", "push_hooks")
        now = self.clock()
        for hook in self.bank.hooks(project["id"]):
            if not hook.get(scope) or (not tag and not webhook_payloads.hook_matches_branch(hook, ref)):
                continue
            if executable(self.bank.hook_state(hook["id"]), now):
                delivery = self._project_delivery(hook, payload, trigger)
                self._submit(lambda delivery=delivery: self._deliver(delivery))
        for system_hook in self.system_hooks:
            if getattr(system_hook, scope):
                delivery = self._system_delivery(system_hook, payload, project["id"])
                self._submit(lambda delivery=delivery: self._deliver(delivery))

    def _project_delivery(self, hook: Mapping, payload: Mapping, trigger: str, *, force: bool = False) -> Delivery:
        return Delivery(
            url=hook["url"],
            token=hook.get("token"),
            verify_tls=bool(hook.get("enable_ssl_verification", True)),
            event=trigger.removesuffix("s").replace("_", " ").title(),  # WebHookService.hook_to_event
            trigger=trigger,
            payload=payload,
            project_id=hook["project_id"],
            hook_id=hook["id"],
            force=force,
        )

    def _system_delivery(self, hook: SystemHook, payload: Mapping, project_id: int | None) -> Delivery:
        return Delivery(
            url=hook.url,
            token=hook.token,
            verify_tls=hook.enable_ssl_verification,
            event="System Hook",
            trigger="system_hooks",
            payload=payload,
            project_id=project_id,
            system_hook_id=hook.id,
        )

    # -- sending ---------------------------------------------------------------------------------------------

    def _deliver(self, delivery: Delivery) -> dict:
        if (
            delivery.hook_id is not None
            and not delivery.force
            and not executable(self.bank.hook_state(delivery.hook_id), self.clock())
        ):
            return {}
        body = json.dumps(delivery.payload)
        headers = self._headers(delivery)
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = requests.post(
                delivery.url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=self.timeout,
                verify=self._verify(delivery),
                allow_redirects=False,
            )
            status = response.status_code
            response.close()
        except requests.RequestException as exc:
            error = _describe(exc)
        duration = time.monotonic() - started
        record = {
            "hook_id": delivery.hook_id,
            "system_hook_id": delivery.system_hook_id,
            "project_id": delivery.project_id,
            "event": delivery.event,
            "trigger": delivery.trigger,
            "url": _without_password(delivery.url),
            "request_headers": {**headers, **({"X-Gitlab-Token": REDACTED} if delivery.token else {})},
            "request_body": body,
            "response_status": status,
            "error": error,
            "duration": duration,
            "created_at": timestamp(),
        }
        self.bank.add_hook_delivery(record)
        if delivery.hook_id is not None:
            succeeded = status is not None and 200 <= status < 400
            now = self.clock()
            self.bank.change_hook_state(
                delivery.hook_id, after_success if succeeded else (lambda state: after_failure(state, now))
            )
        return record

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"GitLab/{GITLAB_VERSION}",
            "Idempotency-Key": str(uuid.uuid4()),
            "X-Gitlab-Event": delivery.event,
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Instance": self._base_url(),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        }
        if delivery.token:
            headers["X-Gitlab-Token"] = delivery.token.replace("\n", "").replace("\r", "")
        return headers

    def _verify(self, delivery: Delivery) -> bool | str:
        if not delivery.verify_tls:
            return False
        return self.ca_bundle or _system_trust_store()


def _system_trust_store() -> bool | str:
    """The operating system's CA certificates (requests alone would use certifi's bundle)."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


def _without_password(url: str) -> str:
    """The URL with the password of its user information (HTTP basic auth) masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{REDACTED}@{host}"))


def _describe(error: requests.RequestException) -> str:
    """The error as GitLab's request history shows it, without the request (and its headers)."""
    return f"{type(error).__name__}: {error}"

"""Settings of a synchronization run, independent of where they are read from (Airflow or a script), and the options
of the ``[imrt]`` section of Airflow's configuration: every default is written here once, in these dataclasses
(:func:`field_defaults`); ``imrt_compat.settings`` reads the Airflow variables, connections and ``[imrt]`` options
into them."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from .errors import PermanentError
from .planning import DeletionGuard
from .scope import GroupScope
from .transport import RetryPolicy, Transport

_DEFAULT_PORTS = {"http": 80, "https": 443}


class InsecureGitLabURL(ValueError, PermanentError):
    """The GitLab URL is ``http://`` and plain HTTP was not allowed: the token would cross the network in clear."""


def field_defaults(settings_class: type) -> dict[str, Any]:
    """The defaults of a settings dataclass's fields, by field name: the one place each default is written."""
    return {f.name: f.default for f in dataclasses.fields(settings_class)}


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, with the default port made explicit: what the token may be sent to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class GitLabSettings:
    base_url: str
    token: str = field(repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff_factor: float = 0.5
    allow_http: bool = False  # plain http:// only for local stacks (the demo and the tests)
    transport: Transport = Transport()  # CA bundle, client certificate and proxies, for the REST client and git

    def __post_init__(self) -> None:
        scheme = urlsplit(self.base_url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"the GitLab URL must start with https:// (got {scheme or 'no'} scheme)")
        if scheme == "http" and not self.allow_http:
            raise InsecureGitLabURL(
                f"the GitLab URL {origin(self.base_url)} is plain http://: the access token would cross the network "
                "unencrypted. Use https://, or set the Airflow variable imrt_gitlab_allow_http to true for a local "
                "test stack"
            )

    @property
    def origin(self) -> str:
        return origin(self.base_url)

    @property
    def retry_policy(self) -> RetryPolicy:
        """How the REST client and the ref-advertisement read retry: one policy from ``retries`` and
        ``backoff_factor``."""
        return RetryPolicy(self.retries, self.backoff_factor)


@dataclass(frozen=True)
class EventRetryPolicy:
    """How the real-time path retries a hook event whose run failed, and how long closed events are kept.

    An event's n-th failed attempt waits ``min(base_seconds * 2**(n-1), max_seconds)`` before the next; the
    ``max_attempts``-th failure ends it ``failed``. Closed events older than ``retention_days`` are pruned.
    """

    base_seconds: float = 60.0
    max_seconds: float = 3600.0
    max_attempts: int = 5
    retention_days: int = 30

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_seconds) and self.base_seconds > 0):
            raise ValueError(f"imrt_webhook_retry_base_seconds must be > 0, not {self.base_seconds}")
        if not (math.isfinite(self.max_seconds) and self.max_seconds >= self.base_seconds):
            raise ValueError(
                f"imrt_webhook_retry_max_seconds ({self.max_seconds}) must be >= imrt_webhook_retry_base_seconds "
                f"({self.base_seconds})"
            )
        if not 1 <= self.max_attempts <= 100:
            raise ValueError(f"imrt_webhook_max_attempts must be between 1 and 100, not {self.max_attempts}")
        if not self.retention_days >= 1:
            raise ValueError(f"imrt_webhook_retention_days must be >= 1, not {self.retention_days}")


ListingMethod = Literal["graphql", "rest"]
"""``graphql``: the sweep (:mod:`imrt_sync.sweep`), falling back to ``rest`` for a run it cannot serve; ``rest``: the
REST listing and a ref advertisement and hooks list per project."""
LISTING_METHODS: tuple[ListingMethod, ...] = get_args(ListingMethod)


@dataclass(frozen=True)
class SyncSettings:
    group: str
    webhook_url: str
    include_subgroups: bool = True  # as legacy 0.1.46: the group's subgroups hold items too
    webhook_secret: str = field(default="", repr=False)
    ignore_projects: frozenset[str] = frozenset()
    map_bound: int = 256
    map_one_per_item: int = 32  # up to this many items, a run maps one instance per item; more are batched
    events_map_bound: int = 8  # a hook events run: a backlog of pushes is synced in a few big instances
    batch_size: int = 64
    deletion_guard_min: int = 5
    deletion_guard_ratio: float = 0.10
    concurrency: int = 8
    git_cache_dir: Path = Path("/tmp/imrt-git-cache")
    git_timeout: float = 300.0
    lock_wait_seconds: float = 75.0
    max_item_json_bytes: int = 5 * 1024 * 1024
    event_retry: EventRetryPolicy = EventRetryPolicy()
    listing: ListingMethod = "graphql"  # how a group run reads the group: the GraphQL sweep, or REST per project
    webhook_verify_days: int = 7  # a sweep run verifies every project's hook once in so many days; 0: every run
    webhook_verify_spread: bool = False  # False: all hooks due at once (a weekly run); True: 1/days of them a run

    def __post_init__(self) -> None:
        DeletionGuard(self.deletion_guard_min, self.deletion_guard_ratio)  # raises ValueError on invalid settings
        if self.listing not in LISTING_METHODS:
            raise ValueError(f"imrt_gitlab_listing must be graphql or rest, not {self.listing!r}")
        if isinstance(self.webhook_verify_days, bool) or not 0 <= self.webhook_verify_days <= 366:
            raise ValueError(
                f"imrt_webhook_verify_days must be a number of days from 0 (every run) to 366, "
                f"not {self.webhook_verify_days!r}"
            )

    @property
    def deletion_guard(self) -> DeletionGuard:
        return DeletionGuard(self.deletion_guard_min, self.deletion_guard_ratio)

    @property
    def scope(self) -> GroupScope:
        return GroupScope(self.group, self.include_subgroups)


@dataclass(frozen=True)
class ReceiverSettings:
    """What the GitLab hook receiver checks an event against."""

    group: str
    include_subgroups: bool = True
    ignore_projects: frozenset[str] = frozenset()
    secret: str = field(default="", repr=False)
    previous_secret: str = field(default="", repr=False)  # accepted too while hooks move to the new secret
    event_retry: EventRetryPolicy = EventRetryPolicy()

    @property
    def scope(self) -> GroupScope:
        return GroupScope(self.group, self.include_subgroups)


@dataclass(frozen=True)
class ImrtOptions:
    """The ``[imrt]`` section of Airflow's configuration (``airflow.cfg`` or ``AIRFLOW__IMRT__<OPTION>``): one field per
    option, named as the option, its default and type (``imrt_compat.settings.imrt_option`` reads it as that type).

    The DAG's timeouts and pool are sized from the measurements for 20,000 items (docs/performance.md): the first
    full sync took 16 min under the scheduler, its planning a few minutes; each value leaves a wide margin for a
    slower GitLab.
    """

    # read by the API server: the legacy routes and the hook receiver
    allow_anonymous_sync: bool = False  # POST /sync without a token (legacy in-cluster cron jobs): insecure
    api_deadline_seconds: float = 15.0  # a legacy route answers 503 when the imrt database has not answered by then
    webhook_path: str = ""  # an extra path for the hook receiver besides /webHook
    webhook_sweep_seconds: float = 30.0  # how often the sweeper looks for pending hook events
    # read when the DAG file is parsed: the guardrails
    dagrun_timeout_minutes: int = 180  # 20,000 items: 16 min measured for a first full sync
    list_ids_timeout_minutes: int = 45  # 20,000 items: about 2 min of planning measured (125 s incremental)
    sync_timeout_minutes: int = 30  # one mapped unit: at most ceil(20,000 / imrt_map_bound) items, about 1 s each
    dispatch_webhooks_timeout_minutes: int = 60  # a first sync creates one hook per item: 20,000 calls
    summary_timeout_minutes: int = 15  # reads every unit's outcome: 21 s measured for 1,500 outcomes
    gitlab_pool: str = "imrt_gitlab"  # the pool of the tasks that call GitLab
    gitlab_pool_slots: int = 8  # its slots when the plugin creates it
    # read when the DAG file is parsed: the failure alert
    alert_email_to: str = ""  # comma-separated recipients; empty: no alert with the SMTP notifier
    alert_email_from: str = ""
    alert_smtp_conn_id: str = "smtp_default"
    failure_notifier: str = "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
    failure_notifier_kwargs: str = "{}"  # a JSON object


ITEM_ID_LINE = r"^\s*(0*[1-9][0-9]*)?\s*$"
"""A line of the trigger form's "Item bank ids" box: one GitLab project id (a whole number >= 1), or blank."""


def item_ids_from(values: Any) -> tuple[int, ...]:
    """The ``item_ids`` param as sorted, distinct GitLab project ids.

    REST callers (and ``POST /sync/{id}``) send integers; the trigger form sends the lines of its text box as strings,
    one id per line, blank lines included (a trailing newline is one). A value that is not an id raises
    ``ValueError`` naming it.
    """
    if values is None:
        return ()
    if isinstance(values, str):
        values = values.splitlines()
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"item_ids must be a list of GitLab project ids, not {values!r}")
    ids = set()
    for value in values:
        if isinstance(value, str) and not value.strip():
            continue
        if not _is_project_id(value):
            raise ValueError(
                f"item_ids: {value!r} is not a GitLab project id (a whole number from 1; the form takes one per line)"
            )
        ids.add(int(value))
    return tuple(sorted(ids))


def _is_project_id(value: Any) -> bool:
    if isinstance(value, str):
        return re.fullmatch(ITEM_ID_LINE, value) is not None
    if isinstance(value, bool):
        return False
    whole = isinstance(value, int) or isinstance(value, float) and value.is_integer()  # JSON Schema: 12.0 is an integer
    return whole and value >= 1


RunMode = Literal["incremental", "full"]
"""``incremental``: only new items and items whose head moved since their last sync; ``full``: re-ingest every item."""
RUN_MODES: tuple[RunMode, ...] = get_args(RunMode)


def run_mode(value: Any) -> RunMode:
    """``value`` as a mode; ValueError when it names none."""
    if value not in RUN_MODES:
        raise ValueError(f"mode must be 'incremental' or 'full', not {value!r}")
    return value


@dataclass(frozen=True)
class RunParams:
    """What the operator asked for: the DAG's params."""

    mode: RunMode = "incremental"
    item_ids: tuple[int, ...] = ()
    dry_run: bool = False
    webhook_events: bool = False  # a run of the hook events DAG: its items are the pending events' projects

    def __post_init__(self) -> None:
        run_mode(self.mode)

    @classmethod
    def from_mapping(cls, params: dict) -> RunParams:
        return cls(
            mode=params.get("mode") or "incremental",
            item_ids=item_ids_from(params.get("item_ids")),
            dry_run=bool(params.get("dry_run")),
        )

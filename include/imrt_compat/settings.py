"""The one reader of the configuration: Airflow connections and variables (``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``
work) and the ``[imrt]`` section of Airflow's configuration, into the typed settings of :mod:`imrt_sync.config`,
whose dataclasses hold every default.

Airflow is imported inside the functions. Variables and connections are read from task code and the API server,
never at DAG parse time: a task takes one :func:`read_variables` snapshot and passes it to every settings function,
so each variable is read once per task (each read is a secrets-backend lookup, then an Execution API call). Airflow
has no bulk read that consults every secrets backend (``Variable.keys`` lists the metastore only), hence one read
per variable. The ``[imrt]`` options (:func:`imrt_option` and the typed accessors below it) are local to the
process, no I/O, so the DAG file reads its guardrails and alerts from them when it is parsed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from imrt_sync.config import (
    EventRetryPolicy,
    GitLabSettings,
    ImrtOptions,
    ReceiverSettings,
    SyncSettings,
    field_defaults,
)
from imrt_sync.errors import PermanentError


def field_default(settings_class: type, name: str) -> str:
    """The default of a settings field, as the text an Airflow variable holds: one definition, the dataclass's."""
    value = field_defaults(settings_class)[name]
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


DEFAULTS: dict[str, str] = {
    "imrt_gitlab_conn_id": "gitlab_default",
    "imrt_db_conn_id": "imrt_default",
    "imrt_gitlab_group": "",
    "imrt_include_subgroups": field_default(SyncSettings, "include_subgroups"),
    "imrt_ignore_projects": "[]",
    "imrt_webhook_url": "",
    "imrt_webhook_secret": "",
    "imrt_webhook_previous_secret": "",
    "imrt_webhook_retry_base_seconds": field_default(EventRetryPolicy, "base_seconds"),
    "imrt_webhook_retry_max_seconds": field_default(EventRetryPolicy, "max_seconds"),
    "imrt_webhook_max_attempts": field_default(EventRetryPolicy, "max_attempts"),
    "imrt_webhook_retention_days": field_default(EventRetryPolicy, "retention_days"),
    "imrt_map_bound": field_default(SyncSettings, "map_bound"),
    "imrt_map_one_per_item": field_default(SyncSettings, "map_one_per_item"),
    "imrt_events_map_bound": field_default(SyncSettings, "events_map_bound"),
    "imrt_batch_size": field_default(SyncSettings, "batch_size"),
    "imrt_deletion_guard_min": field_default(SyncSettings, "deletion_guard_min"),
    "imrt_deletion_guard_ratio": field_default(SyncSettings, "deletion_guard_ratio"),
    "imrt_concurrency": field_default(SyncSettings, "concurrency"),
    "imrt_git_cache_dir": "",
    "imrt_gitlab_allow_http": field_default(GitLabSettings, "allow_http"),
    "imrt_gitlab_listing": field_default(SyncSettings, "listing"),
    "imrt_webhook_verify_days": field_default(SyncSettings, "webhook_verify_days"),
    "imrt_webhook_verify_spread": field_default(SyncSettings, "webhook_verify_spread"),
}
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


class SettingsError(ValueError, PermanentError):
    """A required Airflow variable or connection is missing or malformed."""


def variable(name: str) -> str:
    """One variable, read now (for code outside a task; tasks use :func:`read_variables`)."""
    from airflow.sdk import Variable

    return Variable.get(name, default=DEFAULTS[name])


class VariableSnapshot(Mapping[str, str]):
    """The ``imrt_*`` variables, each read from Airflow at most once, on first use, then kept."""

    def __init__(self) -> None:
        self._read: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._read:
            self._read[name] = variable(name)
        return self._read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(DEFAULTS)

    def __len__(self) -> int:
        return len(DEFAULTS)


def read_variables() -> VariableSnapshot:
    """A snapshot for one task: pass it to the settings functions below."""
    return VariableSnapshot()


def sync_settings(values: Mapping[str, str] | None = None) -> SyncSettings:
    values = read_variables() if values is None else values
    group = values["imrt_gitlab_group"]
    webhook_url = values["imrt_webhook_url"]
    if not group:
        raise SettingsError("set the Airflow variable imrt_gitlab_group (the exact GitLab group path)")
    if not webhook_url:
        raise SettingsError("set the Airflow variable imrt_webhook_url (the URL project hooks point at)")
    try:
        return SyncSettings(
            group=group,
            webhook_url=webhook_url,
            webhook_secret=values["imrt_webhook_secret"],
            include_subgroups=flag(values["imrt_include_subgroups"], "imrt_include_subgroups"),
            ignore_projects=frozenset(_string_list(values["imrt_ignore_projects"])),
            map_bound=_number(values, int, "imrt_map_bound"),
            map_one_per_item=_number(values, int, "imrt_map_one_per_item"),
            events_map_bound=_number(values, int, "imrt_events_map_bound"),
            batch_size=_number(values, int, "imrt_batch_size"),
            deletion_guard_min=_number(values, int, "imrt_deletion_guard_min"),
            deletion_guard_ratio=_number(values, float, "imrt_deletion_guard_ratio"),
            concurrency=_number(values, int, "imrt_concurrency"),
            git_cache_dir=Path(values["imrt_git_cache_dir"] or _default_cache_dir()),
            event_retry=event_retry_policy(values),
            listing=values["imrt_gitlab_listing"].strip().lower(),  # type: ignore[arg-type]  # checked by SyncSettings
            webhook_verify_days=_number(values, int, "imrt_webhook_verify_days"),
            webhook_verify_spread=flag(values["imrt_webhook_verify_spread"], "imrt_webhook_verify_spread"),
        )
    except SettingsError:
        raise
    except ValueError as exc:  # the settings' own checks (e.g. the deletion guard's bounds)
        raise SettingsError(str(exc)) from None


def receiver_settings(values: Mapping[str, str] | None = None) -> ReceiverSettings:
    values = read_variables() if values is None else values
    return ReceiverSettings(
        group=values["imrt_gitlab_group"],
        include_subgroups=flag(values["imrt_include_subgroups"], "imrt_include_subgroups"),
        ignore_projects=frozenset(_string_list(values["imrt_ignore_projects"])),
        secret=values["imrt_webhook_secret"],
        previous_secret=values["imrt_webhook_previous_secret"],
        event_retry=event_retry_policy(values),
    )


def event_retry_policy(values: Mapping[str, str] | None = None) -> EventRetryPolicy:
    """The real-time path's retry and retention settings, checked (a bad value is a SettingsError naming it)."""
    values = read_variables() if values is None else values
    return parse_event_retry_policy({name: values[name] for name in _EVENT_RETRY_VARIABLES})


_EVENT_RETRY_VARIABLES = (
    "imrt_webhook_retry_base_seconds",
    "imrt_webhook_retry_max_seconds",
    "imrt_webhook_max_attempts",
    "imrt_webhook_retention_days",
)


def parse_event_retry_policy(values: dict[str, str]) -> EventRetryPolicy:
    def number(name: str, kind):
        try:
            return kind(str(values[name]).strip())
        except ValueError:
            raise SettingsError(f"the Airflow variable {name} must be {kind.__name__}, not {values[name]!r}") from None

    try:
        return EventRetryPolicy(
            base_seconds=number("imrt_webhook_retry_base_seconds", float),
            max_seconds=number("imrt_webhook_retry_max_seconds", float),
            max_attempts=number("imrt_webhook_max_attempts", int),
            retention_days=number("imrt_webhook_retention_days", int),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def gitlab_settings(values: Mapping[str, str] | None = None) -> GitLabSettings:
    """The GitLab settings from the connection named by ``imrt_gitlab_conn_id``, read through the HTTP provider's
    ``HttpHook`` (:mod:`imrt_compat.gitlab_connection`): base URL, token, timeouts, CA bundle, client certificate
    and proxies."""
    from .gitlab_connection import gitlab_settings_from_connection

    values = read_variables() if values is None else values
    allow_http = flag(values["imrt_gitlab_allow_http"], "imrt_gitlab_allow_http")
    return gitlab_settings_from_connection(values["imrt_gitlab_conn_id"], allow_http=allow_http)


def flag(value: str, name: str) -> bool:
    """A boolean variable: true/false (also 1/0, yes/no, on/off); anything else is a SettingsError."""
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise SettingsError(f"the Airflow variable {name} must be true or false, not {value!r}")


def _number(values: Mapping[str, str], kind: type, name: str):
    value = values[name]
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"the Airflow variable {name} must be {what}, not {value!r}") from None


def _string_list(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        parsed = json.loads(value)
        if not isinstance(parsed, list):
            raise SettingsError("imrt_ignore_projects must be a JSON list or a comma-separated list")
        return [str(v) for v in parsed]
    return [v.strip() for v in value.split(",") if v.strip()]


def _default_cache_dir() -> str:
    home = os.environ.get("AIRFLOW_HOME") or tempfile.gettempdir()
    return str(Path(home) / "imrt-git-cache")


# --------------------------------------------------------------------------- the [imrt] section of the Airflow config

SECTION = "imrt"
_CONF_GETTERS = {bool: "getboolean", int: "getint", float: "getfloat", str: "get"}


def imrt_option(name: str) -> bool | int | float | str:
    """``[imrt] <name>`` (``airflow.cfg`` or ``AIRFLOW__IMRT__<NAME>``), as the type of its default in
    :class:`~imrt_sync.config.ImrtOptions`, that default when unset. Read now, each call."""
    from airflow.configuration import conf

    default = imrt_default(name)
    return getattr(conf, _CONF_GETTERS[type(default)])(SECTION, name, fallback=default)


def imrt_default(name: str) -> bool | int | float | str:
    """The default of ``[imrt] <name>``: the one written in :class:`~imrt_sync.config.ImrtOptions`."""
    return field_defaults(ImrtOptions)[name]


_Option = TypeVar("_Option", bool, int, float, str)


def _typed_option(name: str, kind: type[_Option]) -> _Option:
    """``imrt_option(name)`` as ``kind``, the type its accessor returns: the type of its default in
    :class:`~imrt_sync.config.ImrtOptions` (TypeError if the two ever disagree)."""
    value = imrt_option(name)
    if not isinstance(value, kind):
        raise TypeError(f"[{SECTION}] {name} is read as {type(value).__name__}, not {kind.__name__}")
    return value


def allow_anonymous_sync() -> bool:
    """Opt-in, insecure: let legacy in-cluster cron jobs call ``POST /sync`` without a token."""
    return _typed_option("allow_anonymous_sync", bool)


def api_deadline_seconds() -> float:
    """A legacy route answers 503 when it has not finished by then."""
    return _typed_option("api_deadline_seconds", float)


def webhook_path() -> str:
    """An extra path for the hook receiver besides ``/webHook``, without a trailing slash; empty when none."""
    return _typed_option("webhook_path", str).rstrip("/")


def webhook_sweep_seconds() -> float:
    """How often the hook receiver's sweeper looks for pending events."""
    return _typed_option("webhook_sweep_seconds", float)


def task_timeout(name: str) -> timedelta:
    """One of the DAG's ``*_timeout_minutes`` options as a duration; ValueError when it is not positive."""
    minutes = _typed_option(name, int)
    if minutes <= 0:
        raise ValueError(f"[{SECTION}] {name} must be a positive number of minutes, not {minutes}")
    return timedelta(minutes=minutes)


def gitlab_pool() -> str:
    """The pool of the tasks that call GitLab."""
    return _typed_option("gitlab_pool", str)


def gitlab_pool_slots() -> int:
    """The slots of that pool when the plugin creates it."""
    return _typed_option("gitlab_pool_slots", int)


def failure_notifier() -> str:
    """The notifier class of the failure alert (its import path); the default when set empty."""
    return _typed_option("failure_notifier", str) or str(imrt_default("failure_notifier"))


def failure_notifier_kwargs() -> dict:
    """The notifier's arguments: a JSON object (ValueError otherwise); ``{}`` when set empty."""
    configured = _typed_option("failure_notifier_kwargs", str) or str(imrt_default("failure_notifier_kwargs"))
    kwargs = json.loads(configured)
    if not isinstance(kwargs, dict):
        raise ValueError(f"[{SECTION}] failure_notifier_kwargs must be a JSON object, not {configured!r}")
    return kwargs


def alert_recipients() -> list[str]:
    """``alert_email_to``'s comma-separated addresses."""
    return [address.strip() for address in _typed_option("alert_email_to", str).split(",") if address.strip()]


def alert_email_from() -> str:
    return _typed_option("alert_email_from", str)


def alert_smtp_conn_id() -> str:
    return _typed_option("alert_smtp_conn_id", str)

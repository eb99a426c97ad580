"""Reading the run's settings from Airflow connections and variables (``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` work).

Airflow is imported inside the functions: this module is only called from task code, never at DAG parse time.
A task takes one :func:`read_variables` snapshot and passes it to every settings function, so each variable is read
once per task (each read is a secrets-backend lookup, then an Execution API call). Airflow has no bulk read that
consults every secrets backend (``Variable.keys`` lists the metastore only), hence one read per variable.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from imrt_sync.config import EventRetryPolicy, GitLabSettings, ReceiverSettings, SyncSettings, field_defaults
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
    "imrt_batch_size": field_default(SyncSettings, "batch_size"),
    "imrt_deletion_guard_min": field_default(SyncSettings, "deletion_guard_min"),
    "imrt_deletion_guard_ratio": field_default(SyncSettings, "deletion_guard_ratio"),
    "imrt_concurrency": field_default(SyncSettings, "concurrency"),
    "imrt_git_cache_dir": "",
    "imrt_gitlab_allow_http": field_default(GitLabSettings, "allow_http"),
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
            batch_size=_number(values, int, "imrt_batch_size"),
            deletion_guard_min=_number(values, int, "imrt_deletion_guard_min"),
            deletion_guard_ratio=_number(values, float, "imrt_deletion_guard_ratio"),
            concurrency=_number(values, int, "imrt_concurrency"),
            git_cache_dir=Path(values["imrt_git_cache_dir"] or _default_cache_dir()),
            event_retry=event_retry_policy(values),
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
    "imrt_webhook_retry_base_seconds", "imrt_webhook_retry_max_seconds", "imrt_webhook_max_attempts",
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

import dataclasses
import json
import re
from pathlib import Path

import pytest

from imrt_compat.gitlab_connection import CLIENT_EXTRAS, base_url
from imrt_compat.settings import (
    DEFAULTS,
    SettingsError,
    _default_cache_dir,
    _string_list,
    gitlab_settings,
    imrt_option,
    sync_settings,
)
from imrt_sync import gitrepo
from imrt_sync.config import GitLabSettings, ImrtOptions, RunParams, SyncSettings, field_defaults, origin
from imrt_sync.gitlab import GitLabClient
from imrt_sync.gitrepo import GitAccess
from imrt_sync.pipeline import Services
from imrt_sync.planning import DeletionGuard
from imrt_sync.transport import RetryPolicy

CONFIGURATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.mark.parametrize(
    ("host", "scheme", "port", "expected"),
    [
        ("https://gitlab.example.org", None, None, "https://gitlab.example.org"),
        ("https://gitlab.example.org/", None, 443, "https://gitlab.example.org:443"),
        ("http://127.0.0.1:8929", None, None, "http://127.0.0.1:8929"),
        ("http://127.0.0.1:8929", None, 9999, "http://127.0.0.1:8929"),
        ("gitlab.example.org", "http", 8080, "http://gitlab.example.org:8080"),
        ("gitlab.example.org", None, None, "https://gitlab.example.org"),
        ("https://example.org/gitlab/", None, None, "https://example.org/gitlab"),
    ],
)
def test_gitlab_base_url_from_a_connection(host, scheme, port, expected):
    assert base_url(host, scheme, port) == expected


def test_ignore_list_is_json_or_comma_separated():
    assert _string_list('["itembankreports", 12]') == ["itembankreports", "12"]
    assert _string_list(" itembankreports , other ,") == ["itembankreports", "other"]
    assert _string_list("") == []


def test_run_params_from_the_trigger_form():
    params = RunParams.from_mapping({"mode": "full", "item_ids": ["12", 7, "12"], "dry_run": True})
    assert params == RunParams(mode="full", item_ids=(7, 12), dry_run=True)
    assert RunParams.from_mapping({}) == RunParams()
    with pytest.raises(ValueError, match="mode must be"):
        RunParams.from_mapping({"mode": "everything"})
    with pytest.raises(ValueError, match="item_ids: 'not-a-number' is not a GitLab project id"):
        RunParams.from_mapping({"item_ids": ["not-a-number"]})


def test_item_ids_from_the_forms_lines_and_from_rest_callers():
    """The form sends one string per line (a trailing newline is a blank line); REST and POST /sync/{id} send ints."""
    assert RunParams.from_mapping({"item_ids": ["200005", " 200006\r", "", "200005"]}).item_ids == (200005, 200006)
    assert RunParams.from_mapping({"item_ids": [200006, 200005]}).item_ids == (200005, 200006)
    assert RunParams.from_mapping({"item_ids": [12.0, "007"]}).item_ids == (7, 12)
    assert RunParams.from_mapping({"item_ids": None}).item_ids == ()
    assert RunParams.from_mapping({"item_ids": ["", "  "]}).item_ids == ()
    for bad in ("12 13", "12,13", "0", "-3", "1e3", 0, -3, 1.5, True, None, {"id": 1}):
        with pytest.raises(ValueError, match=re.escape(f"item_ids: {bad!r} is not a GitLab project id")):
            RunParams.from_mapping({"item_ids": ["200005", bad]})
    with pytest.raises(ValueError, match="item_ids must be a list of GitLab project ids, not 12"):
        RunParams.from_mapping({"item_ids": 12})


def test_the_token_is_not_in_the_settings_repr():
    settings = GitLabSettings(base_url="https://gitlab.example.org", token="glpat-very-secret")
    assert "glpat-very-secret" not in repr(settings)


# --------------------------------------------------------------------------- settings read from Airflow variables

REQUIRED = {
    "AIRFLOW_VAR_IMRT_GITLAB_GROUP": "iat-dev",
    "AIRFLOW_VAR_IMRT_WEBHOOK_URL": "https://imrt.example.org/webHook",
}


def gitlab_connection(monkeypatch, host: str, token: str = "glpat-settings-test-token") -> None:
    connection = {"conn_type": "http", "host": host, "password": token}
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(connection))


@pytest.fixture
def required_variables(monkeypatch):
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IMRT_DELETION_GUARD_RATIO", "0", r"imrt_deletion_guard_ratio must be a share .* in \(0, 1\]"),
        ("IMRT_DELETION_GUARD_RATIO", "1.01", r"imrt_deletion_guard_ratio must be .* not 1.01"),
        ("IMRT_DELETION_GUARD_RATIO", "ten percent", "imrt_deletion_guard_ratio must be a number, not 'ten percent'"),
        ("IMRT_DELETION_GUARD_MIN", "-1", "imrt_deletion_guard_min must be a whole number of items, 0 or more"),
        ("IMRT_DELETION_GUARD_MIN", "2.5", "imrt_deletion_guard_min must be a whole number, not '2.5'"),
        ("IMRT_GITLAB_LISTING", "soap", "imrt_gitlab_listing must be graphql or rest, not 'soap'"),
        ("IMRT_WEBHOOK_VERIFY_DAYS", "-1", "imrt_webhook_verify_days must be a number of days from 0"),
        ("IMRT_WEBHOOK_VERIFY_DAYS", "weekly", "imrt_webhook_verify_days must be a whole number, not 'weekly'"),
    ],
)
def test_invalid_deletion_guard_variables_are_a_settings_error_naming_the_variable(
    monkeypatch, required_variables, variable, value, message
):
    monkeypatch.setenv(f"AIRFLOW_VAR_{variable}", value)
    with pytest.raises(SettingsError, match=message):
        sync_settings()


def test_the_listing_is_the_sweep_unless_set_to_rest(monkeypatch, required_variables):
    assert (sync_settings().listing, sync_settings().webhook_verify_days) == ("graphql", 7)
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_GITLAB_LISTING", " REST ")
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_WEBHOOK_VERIFY_DAYS", "0")
    assert (sync_settings().listing, sync_settings().webhook_verify_days) == ("rest", 0)
    assert sync_settings().webhook_verify_spread is False
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_WEBHOOK_VERIFY_SPREAD", "true")
    assert sync_settings().webhook_verify_spread is True


def test_the_deletion_guard_bounds_are_accepted(monkeypatch, required_variables):
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_DELETION_GUARD_MIN", "0")
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_DELETION_GUARD_RATIO", "1")
    settings = sync_settings()
    assert settings.deletion_guard == DeletionGuard(0, 1.0)


def test_an_http_gitlab_url_is_refused_unless_allowed(monkeypatch):
    gitlab_connection(monkeypatch, "http://gitlab.internal:8929")
    monkeypatch.delenv("AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP", raising=False)
    with pytest.raises(SettingsError, match="plain http://.* set the Airflow variable imrt_gitlab_allow_http") as error:
        gitlab_settings()
    assert "glpat-settings-test-token" not in str(error.value)
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP", "true")
    assert gitlab_settings().allow_http is True
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP", "maybe")
    with pytest.raises(SettingsError, match="imrt_gitlab_allow_http must be true or false, not 'maybe'"):
        gitlab_settings()


def test_an_https_gitlab_url_needs_no_setting(monkeypatch):
    gitlab_connection(monkeypatch, "https://gitlab.example.org")
    monkeypatch.delenv("AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP", raising=False)
    settings = gitlab_settings()
    assert settings.origin == "https://gitlab.example.org:443" and settings.allow_http is False


def test_git_access_and_services_reprs_hide_the_token():
    token = "glpat-repr-secret-token"
    access = GitAccess(token, 30, origin="https://gitlab.example.org")
    services = Services(
        SyncSettings(group="iat-dev", webhook_url="https://imrt.example.org/webHook", webhook_secret="hook-secret-x"),
        None,
        None,
        access,  # type: ignore[arg-type]  # only the reprs are under test
    )
    assert token not in repr(access) and token not in repr(services) and "hook-secret-x" not in repr(services)
    assert "gitlab.example.org" in repr(access)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://GitLab.example.org/iat/1.git", "https://gitlab.example.org:443"),
        ("https://gitlab.example.org:443/x", "https://gitlab.example.org:443"),
        ("http://127.0.0.1:8929/api/v4", "http://127.0.0.1:8929"),
        ("http://gitlab.example.org/", "http://gitlab.example.org:80"),
    ],
)
def test_origin_makes_the_default_port_explicit(url, expected):
    assert origin(url) == expected


# --------------------------------------------------------------------------- one retry policy for GitLab reads


def retry_parameters(adapter) -> tuple:
    retry = adapter.max_retries
    return retry.total, retry.backoff_factor, retry.status_forcelist, retry.other, retry.raise_on_status


def test_the_ref_advertisement_retries_like_the_gitlab_clients_reads():
    settings = GitLabSettings(base_url="https://gitlab.example.org", token="glpat-x", retries=2, backoff_factor=0.01)
    access = GitAccess.for_gitlab(settings)
    assert access.retry_policy == settings.retry_policy == RetryPolicy(2, 0.01)
    url = "https://gitlab.example.org/iat/1.git/info/refs"
    advertisement = gitrepo._http(access.retry_policy).get_adapter(url)
    with GitLabClient(settings) as client:
        reads = client._reads.get_adapter(url)
        assert retry_parameters(advertisement) == retry_parameters(reads)
    assert advertisement.max_retries.total == 2 and "GET" in advertisement.max_retries.allowed_methods


def test_the_ref_advertisement_opens_its_connection_within_the_gitlab_connect_timeout():
    settings = GitLabSettings(base_url="https://gitlab.example.org", token="glpat-x", connect_timeout=3.5)
    assert GitAccess.for_gitlab(settings).connect_timeout == 3.5


def test_git_access_without_gitlab_settings_takes_the_gitlab_defaults():
    access = GitAccess("glpat-x", origin="https://gitlab.example.org")
    defaults = field_defaults(GitLabSettings)
    assert access.retry_policy == RetryPolicy(defaults["retries"], defaults["backoff_factor"]) == RetryPolicy(5, 0.5)
    assert access.timeout == field_defaults(SyncSettings)["git_timeout"] == 300
    assert access.connect_timeout == defaults["connect_timeout"] == 10


# --------------------------------------------------------------------------- the [imrt] options


def test_each_imrt_option_is_read_as_the_type_of_its_default(monkeypatch):
    for option in dataclasses.fields(ImrtOptions):
        monkeypatch.delenv(f"AIRFLOW__IMRT__{option.name.upper()}", raising=False)
        assert imrt_option(option.name) == option.default and type(imrt_option(option.name)) is type(option.default)
    monkeypatch.setenv("AIRFLOW__IMRT__GITLAB_POOL_SLOTS", "3")
    monkeypatch.setenv("AIRFLOW__IMRT__ALLOW_ANONYMOUS_SYNC", "True")
    monkeypatch.setenv("AIRFLOW__IMRT__API_DEADLINE_SECONDS", "2.5")
    assert (imrt_option("gitlab_pool_slots"), imrt_option("allow_anonymous_sync")) == (3, True)
    assert imrt_option("api_deadline_seconds") == 2.5


# --------------------------------------------------------------------------- the defaults docs/configuration.md lists


def documented_defaults(heading: str) -> dict[str, str]:
    """``{name: default}`` from the tables of the section of docs/configuration.md under ``heading``: the first two
    cells of each row, where ``| `a` / `b` | `1` / `2` |`` documents two names."""
    lines = CONFIGURATION_DOC.read_text(encoding="utf-8").splitlines()
    defaults: dict[str, str] = {}
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not line.startswith("|") or cells[1] in ("default", "---"):
            continue
        names, values = cells[0].split(" / "), cells[1].split(" / ")
        defaults.update(zip((name.strip("`") for name in names), (value.strip("`") for value in values), strict=True))
    return defaults


def same_default(documented: str, default) -> bool:
    if documented in ("empty", "(required)"):
        return default == ""
    try:
        return float(documented) == float(default)
    except ValueError:
        return documented == str(default)


def differences(documented: dict[str, str], code: dict) -> list[str]:
    assert documented.keys() == code.keys()
    return [
        f"{name}: documented {documented[name]}, code {code[name]!r}"
        for name in code
        if not same_default(documented[name], code[name])
    ]


def test_the_documented_imrt_options_match_the_code():
    documented = documented_defaults("## Airflow configuration: the `[imrt]` section")
    assert not differences(documented, field_defaults(ImrtOptions))


def test_the_documented_gitlab_extras_match_the_code():
    gitlab_defaults = field_defaults(GitLabSettings)
    code = {extra: gitlab_defaults[name] for extra, (name, _) in CLIENT_EXTRAS.items()}
    assert not differences(documented_defaults("### GitLab timeouts and retries"), code)


def test_the_documented_variables_match_the_code(monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", "$AIRFLOW_HOME")
    code = {**DEFAULTS, "imrt_git_cache_dir": _default_cache_dir()}
    connections = dict(re.findall(r"\| `(\w+)` \(`(imrt_\w+_conn_id)`\)", CONFIGURATION_DOC.read_text()))
    assert {variable: connection for connection, variable in connections.items()} == {
        name: code.pop(name) for name in ("imrt_gitlab_conn_id", "imrt_db_conn_id")
    }
    assert not differences(documented_defaults("### Variables"), code)

import pytest

from imrt_sync.airflow_settings import _base_url, _string_list
from imrt_sync.config import GitLabSettings, RunParams


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
    assert _base_url(host, scheme, port) == expected


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
    with pytest.raises(ValueError):
        RunParams.from_mapping({"item_ids": ["not-a-number"]})


def test_the_token_is_not_in_the_settings_repr():
    settings = GitLabSettings(base_url="https://gitlab.example.org", token="glpat-very-secret")
    assert "glpat-very-secret" not in repr(settings)

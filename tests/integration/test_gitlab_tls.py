"""GitLab behind enterprise TLS: the item bank server over HTTPS with a certificate from the test's own CA.

The REST client, the ref advertisement read (``remote_heads``) and git (``ItemRepository.fetch``) verify GitLab's
certificate against the configured CA bundle, and fail with a TLS error naming the host without it; the Airflow
connection's extras (read through ``HttpHook``) configure the same.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import threading
import time

import pytest
import trustme

from imrt_compat.settings import SettingsError, gitlab_settings
from imrt_sync.config import GitLabSettings
from imrt_sync.gitlab import GitLabClient, GitLabError
from imrt_sync.gitrepo import GitAccess, GitFetchError, ItemRepository, remote_heads
from imrt_sync.scope import GroupScope
from imrt_sync.transport import Transport
from itembank_server import ItemBank, ItemBankServer
from itembank_server.server import TLS_HANDSHAKE_FAILED

TOKEN = "glpat-tls-test-token-value"
GROUP = "iat-tls"
# Variables that would make requests, OpenSSL or git trust another CA than the system's or the configured one.
_TRUST_ENVIRONMENT = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSL_NO_VERIFY",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(autouse=True)
def system_trust_only(monkeypatch):
    for name in _TRUST_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(ca, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def other_ca_bundle(tmp_path_factory) -> str:
    """A CA that did not sign the server's certificate."""
    path = tmp_path_factory.mktemp("tls") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    bank = ItemBank(tmp_path_factory.mktemp("bank"))
    bank.create_group(GROUP)
    bank.create_project(GROUP, "410001", files={"item.json": {"id": "410001"}})
    bank.create_project(GROUP, "410002", files={"item.json": {"id": "410002"}})
    yield bank
    bank.close()


@pytest.fixture(scope="module")
def server(bank, ca, tmp_path_factory):
    directory = tmp_path_factory.mktemp("server-tls")
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = directory / "chain.pem", directory / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in certificate.cert_chain_pems))
    certificate.private_key_pem.write_to_path(str(key))
    with ItemBankServer(bank, tokens={TOKEN}, tls_cert=str(chain), tls_key=str(key)) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_counters(server):
    server.reset_counters()


def settings(server, transport: Transport) -> GitLabSettings:
    return GitLabSettings(
        base_url=server.url, token=TOKEN, read_timeout=10, retries=2, backoff_factor=0.01, transport=transport
    )


def first_project(gitlab: GitLabClient) -> dict:
    return min(gitlab.group_projects(GroupScope(GROUP)), key=lambda project: project["id"])


def test_the_server_answers_https_only_with_https_urls(server, ca_bundle):
    assert server.url.startswith("https://127.0.0.1:")
    with GitLabClient(settings(server, Transport(ca_bundle=ca_bundle))) as gitlab:
        project = first_project(gitlab)
    assert project["http_url_to_repo"] == f"{server.url}/{GROUP}/410001.git"
    assert project["web_url"] == f"{server.url}/{GROUP}/410001"


def test_rest_remote_heads_and_git_verify_against_the_configured_ca(server, bank, ca_bundle, tmp_path):
    gitlab_settings_ = settings(server, Transport(ca_bundle=ca_bundle))
    with GitLabClient(gitlab_settings_) as gitlab:
        projects = list(gitlab.group_projects(GroupScope(GROUP)))
    assert [p["path"] for p in projects] == ["410001", "410002"]
    project = projects[0]
    access = GitAccess.for_gitlab(gitlab_settings_, timeout=60)
    heads = remote_heads(project["http_url_to_repo"], access)
    assert heads == {"main": bank.head(project["id"])}
    with ItemRepository(tmp_path / "cache", project["id"], project["http_url_to_repo"], access) as repo:
        head = repo.fetch("main")
        assert head.sha == heads["main"]
        assert json.loads(repo.read(head.sha, "item.json", 10_000)) == {"id": "410001"}
    assert server.counters()["git info/refs"] >= 2  # remote_heads and git fetch both reached the server


@pytest.mark.parametrize("trusted", ["system trust store", "another CA"])
def test_without_the_ca_rest_remote_heads_and_git_fail_with_a_tls_error_naming_the_host(
    server, bank, other_ca_bundle, tmp_path, trusted
):
    transport = Transport() if trusted == "system trust store" else Transport(ca_bundle=other_ca_bundle)
    gitlab_settings_ = settings(server, transport)
    host = server.url  # https://127.0.0.1:<port>
    with GitLabClient(gitlab_settings_) as gitlab, pytest.raises(GitLabError) as rest_failure:
        list(gitlab.group_projects(GroupScope(GROUP)))
    handshakes_failed(server, 1)  # not retried: a certificate that does not verify will not verify on a retry
    message = str(rest_failure.value)
    assert f"TLS connection to {host} failed: certificate verify failed" in message
    assert 'extra "verify"' in message and TOKEN not in message
    assert rest_failure.value.transient is False

    url = f"{host}/{GROUP}/410001.git"
    access = GitAccess.for_gitlab(gitlab_settings_, timeout=60)
    with pytest.raises(GitFetchError) as heads_failure:
        remote_heads(url, access)
    handshakes_failed(server, 2)
    assert f"TLS connection to {host} failed: certificate verify failed" in str(heads_failure.value)
    assert TOKEN not in str(heads_failure.value)

    with ItemRepository(tmp_path / "cache", 1, url, access) as repo, pytest.raises(GitFetchError) as git_failure:
        repo.fetch("main")
    assert f"unable to access '{url}/'" in str(git_failure.value)
    assert "certificate" in str(git_failure.value).lower() and TOKEN not in str(git_failure.value)
    # git built with GnuTLS checks the certificate after the handshake and hangs up; one built with OpenSSL fails the
    # handshake: either way no request got through, so the token never left the client.
    assert set(server.counters()) == {TLS_HANDSHAKE_FAILED}


def handshakes_failed(server, expected: int, timeout: float = 10.0) -> None:
    """Wait until the server has counted ``expected`` failed TLS handshakes (its side of a handshake ends a moment
    after the client's), then check there were no more."""
    deadline = time.monotonic() + timeout
    while server.counters().get(TLS_HANDSHAKE_FAILED, 0) < expected:
        assert time.monotonic() < deadline, f"the server did not count {expected} failed TLS handshakes"
        time.sleep(0.01)
    assert server.counters()[TLS_HANDSHAKE_FAILED] == expected


def test_the_transport_reaches_git_through_its_environment(server, ca_bundle):
    transport = Transport(
        ca_bundle=ca_bundle,
        client_cert="/etc/imrt/client.pem",
        client_key="/etc/imrt/client.key",
        proxies={"https": "http://proxy.example.org:3128"},
    )
    environment = GitAccess.for_gitlab(settings(server, transport)).environment()
    config = {
        environment[f"GIT_CONFIG_KEY_{index}"]: environment[f"GIT_CONFIG_VALUE_{index}"]
        for index in range(int(environment["GIT_CONFIG_COUNT"]))
    }
    assert config["http.sslCAInfo"] == ca_bundle
    assert config["http.sslCert"] == "/etc/imrt/client.pem" and config["http.sslKey"] == "/etc/imrt/client.key"
    assert config["http.proxy"] == "http://proxy.example.org:3128"
    assert transport.requests_options() == {
        "verify": ca_bundle,
        "cert": ("/etc/imrt/client.pem", "/etc/imrt/client.key"),
        "proxies": {"https": "http://proxy.example.org:3128"},
    }
    assert "proxy.example.org" not in repr(transport)  # proxy URLs may carry credentials


class _Tunnel(socketserver.StreamRequestHandler):
    """An HTTP ``CONNECT`` proxy's connection: read the request, connect to the target, relay bytes both ways."""

    def handle(self) -> None:
        method, target, _ = self.rfile.readline(65536).decode("ascii").split(" ", 2)
        while self.rfile.readline(65536).strip():  # the request's headers
            pass
        self.server.targets.append(f"{method} {target}")  # type: ignore[attr-defined]
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            sockets = [self.connection, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is self.connection else self.connection).sendall(data)


@pytest.fixture
def proxy():
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Tunnel) as server:
        server.daemon_threads = True
        server.targets = []  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        yield server
        server.shutdown()
        thread.join()


def test_rest_remote_heads_and_git_go_through_the_configured_proxy(server, bank, ca_bundle, proxy, tmp_path):
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    gitlab_settings_ = settings(server, Transport(ca_bundle=ca_bundle, proxies={"https": proxy_url}))
    target = f"CONNECT 127.0.0.1:{server.port}"
    with GitLabClient(gitlab_settings_) as gitlab:
        project = first_project(gitlab)
    assert proxy.targets == [target]
    access = GitAccess.for_gitlab(gitlab_settings_, timeout=60)
    assert remote_heads(project["http_url_to_repo"], access) == {"main": bank.head(project["id"])}
    assert proxy.targets == [target] * 2
    with ItemRepository(tmp_path / "cache", project["id"], project["http_url_to_repo"], access) as repo:
        assert repo.fetch("main").sha == bank.head(project["id"])
    assert len(proxy.targets) >= 3 and set(proxy.targets) == {target}  # git tunnelled its requests too


# --------------------------------------------------------------------------- the Airflow connection (HttpHook)


def airflow_connection(monkeypatch, server, **extra) -> None:
    connection = {"conn_type": "http", "host": server.url, "password": TOKEN, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(connection))
    monkeypatch.delenv("AIRFLOW_VAR_IMRT_GITLAB_CONN_ID", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP", raising=False)


def test_the_connection_extra_verify_is_the_ca_bundle_of_rest_and_git(monkeypatch, server, bank, ca_bundle):
    airflow_connection(monkeypatch, server, verify=ca_bundle, timeout=10, retries=1)
    from_airflow = gitlab_settings()
    assert from_airflow.transport == Transport(ca_bundle=ca_bundle)
    assert from_airflow.base_url == server.url and from_airflow.read_timeout == 10
    with GitLabClient(from_airflow) as gitlab:
        project = first_project(gitlab)
    heads = remote_heads(project["http_url_to_repo"], GitAccess.for_gitlab(from_airflow, timeout=60))
    assert heads == {"main": bank.head(project["id"])}


def test_a_connection_without_verify_uses_the_system_trust_store_and_fails(monkeypatch, server):
    airflow_connection(monkeypatch, server)
    from_airflow = gitlab_settings()
    assert from_airflow.transport == Transport()
    with GitLabClient(from_airflow) as gitlab, pytest.raises(GitLabError, match="certificate verify failed"):
        first_project(gitlab)


def test_the_connection_extras_cert_and_proxies_reach_the_settings(monkeypatch, server, ca_bundle):
    proxies = {"https": "http://proxy.example.org:3128"}
    airflow_connection(
        monkeypatch, server, verify=ca_bundle, cert=["/etc/imrt/client.pem", "/etc/imrt/client.key"], proxies=proxies
    )
    assert gitlab_settings().transport == Transport(
        ca_bundle=ca_bundle, client_cert="/etc/imrt/client.pem", client_key="/etc/imrt/client.key", proxies=proxies
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"verify": False}, 'extra "verify" must be the path of a CA bundle .* or true, not False'),
        ({"verify": "false"}, 'extra "verify" must be the path of a CA bundle .* or true, not False'),
        ({"verify": "/nowhere/ca.pem"}, 'extra "verify": the CA bundle /nowhere/ca.pem does not exist'),
        ({"cert": ["a", "b", "c"]}, 'extra "cert" must be the path of a PEM client certificate'),
        ({"proxies": "http://proxy:3128"}, 'extra "proxies" must be an object'),
    ],
)
def test_a_malformed_tls_extra_is_a_settings_error_naming_the_connection(monkeypatch, server, extra, message):
    airflow_connection(monkeypatch, server, **extra)
    with pytest.raises(SettingsError, match=f"connection gitlab_default: {message}") as error:
        gitlab_settings()
    assert TOKEN not in str(error.value)

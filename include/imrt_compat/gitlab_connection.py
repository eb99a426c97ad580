"""The GitLab settings from an Airflow connection (``gitlab_default``), read through the HTTP provider's ``HttpHook``.

``HttpHook.get_conn()`` configures a ``requests.Session`` from the connection: the extras ``verify`` (or
``verify_ssl``), ``cert`` and ``proxies`` (or ``proxy``) become the session's ``verify``, ``cert`` and ``proxies``
(apache-airflow-providers-http 6.3.0, ``HttpHook._configure_session_from_extra``). The GitLab client does not send
its requests through that session: the hook turns every other extra key into an HTTP header and a connection login
into basic auth carrying the token, and the session has neither the client's retries nor its origin check. Its TLS
and proxy settings are taken into :class:`~imrt_sync.transport.Transport`, which the REST client and git both use.

Connection fields: host = GitLab base URL (or a host name, with ``schema`` as scheme and ``port``), password = the
access token (sent as ``PRIVATE-TOKEN`` by the client, never as an extra: extras are headers on every request).
Extras: ``verify`` (a CA bundle path; ``false`` is refused), ``cert`` (a PEM path, or ``[cert, key]``),
``proxies`` (``{"https": "http://proxy:3128"}``), ``connect_timeout``, ``timeout``, ``retries``, ``backoff_factor``
(an absent one keeps :class:`~imrt_sync.config.GitLabSettings`' default).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import requests
from airflow.providers.http.hooks.http import HttpHook

from imrt_sync.config import GitLabSettings
from imrt_sync.transport import Transport

from .settings import SettingsError

# The extras that tune the REST client (and the ref-advertisement read, which retries the same way): each becomes
# the GitLabSettings field named here, as that type.
CLIENT_EXTRAS = {
    "connect_timeout": ("connect_timeout", float),
    "timeout": ("read_timeout", float),
    "retries": ("retries", int),
    "backoff_factor": ("backoff_factor", float),
}


def gitlab_settings_from_connection(conn_id: str, *, allow_http: bool) -> GitLabSettings:
    """The GitLab base URL, token, timeouts, retries and transport of the connection ``conn_id``; SettingsError
    naming the connection (never the token) when it is incomplete or malformed."""
    hook = HttpHook(method="GET", http_conn_id=conn_id)
    conn = hook.get_connection(conn_id)
    if not conn.host or not conn.password:
        raise SettingsError(f"connection {conn_id} needs a host (GitLab base URL) and a password (access token)")
    try:
        session = hook.get_conn()
        try:
            transport = transport_of(session)
        finally:
            session.close()
        return GitLabSettings(
            base_url=base_url(conn.host, conn.schema, conn.port),
            token=conn.password,
            allow_http=allow_http,
            transport=transport,
            **_client_options(conn.extra_dejson),
        )
    except (TypeError, ValueError) as exc:  # http:// without imrt_gitlab_allow_http, a malformed extra
        raise SettingsError(f"connection {conn_id}: {exc}") from None


def _client_options(extra: dict) -> dict:
    """The timeouts and retries the connection's extras set, as GitLabSettings fields (the others keep their
    defaults); TypeError or ValueError for an extra that is not a number."""
    return {name: kind(extra[key]) for key, (name, kind) in CLIENT_EXTRAS.items() if key in extra}


def transport_of(session: requests.Session) -> Transport:
    """The CA bundle, client certificate and proxies ``HttpHook`` configured on ``session``."""
    client_cert, client_key = _client_cert(session.cert)
    return Transport(
        ca_bundle=_ca_bundle(session.verify),
        client_cert=client_cert,
        client_key=client_key,
        proxies=_proxies(session.proxies),
    )


def _ca_bundle(verify) -> str | None:
    """None (the system's trust store) for ``true``; the path of a CA bundle; ``false`` is refused."""
    if isinstance(verify, str) and verify.strip().lower() in ("true", "false"):  # a URI-form extra is a string
        verify = verify.strip().lower() == "true"
    if verify is True:
        return None
    if verify is False or not isinstance(verify, str) or not verify:
        raise ValueError(
            f'extra "verify" must be the path of a CA bundle (PEM) or true, not {verify!r}: without verification '
            "the access token would go to any server presenting a certificate"
        )
    if not os.path.exists(verify):
        raise ValueError(f'extra "verify": the CA bundle {verify} does not exist')
    return verify


def _client_cert(cert) -> tuple[str | None, str | None]:
    """``(certificate, key)`` from requests' ``cert``: a PEM path holding both, or a ``[certificate, key]`` pair."""
    if cert is None or cert == "":
        return None, None
    if isinstance(cert, str):
        return cert, None
    if isinstance(cert, (list, tuple)) and len(cert) == 2 and all(isinstance(path, str) for path in cert):
        return cert[0], cert[1]
    raise ValueError('extra "cert" must be the path of a PEM client certificate, or [certificate path, key path]')


def _proxies(proxies) -> dict[str, str]:
    if not isinstance(proxies, dict) or not all(isinstance(url, str) for url in proxies.values()):
        raise ValueError('extra "proxies" must be an object such as {"https": "http://proxy.example.org:3128"}')
    return dict(proxies)


def base_url(host: str, scheme: str | None, port: int | None) -> str:
    """The GitLab base URL from a connection: ``host`` may be a full URL, or a host name with scheme and port."""
    parsed = urlsplit(host if "://" in host else f"{scheme or 'https'}://{host}")
    netloc = parsed.netloc if parsed.port or not port else f"{parsed.hostname}:{port}"
    return urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))

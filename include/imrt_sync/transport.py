"""How HTTPS connections to GitLab are made, the same for the REST client (requests) and for git.

An enterprise GitLab often has a certificate from an internal CA, may want a client certificate, and is reached
through a proxy. :class:`Transport` holds those settings once; :meth:`Transport.requests_options` gives them to
requests per request (so ``REQUESTS_CA_BUNDLE`` cannot silently replace a configured CA bundle, which it does for a
session-level ``verify``) and :meth:`Transport.git_config` to git (``http.sslCAInfo``, ``http.sslCert``,
``http.sslKey``, ``http.proxy``; https://git-scm.com/docs/git-config#Documentation/git-config.txt-httpsslCAInfo).
:class:`RetryPolicy` is how both of requests' users, the REST client and the ref-advertisement read, retry.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Transport:
    """``ca_bundle``: PEM file (or ``c_rehash`` directory) of the CAs GitLab's certificate must chain to; None: the
    system's trust store. ``client_cert``/``client_key``: a PEM client certificate and its key (the key may be in the
    certificate file). ``proxies``: requests' mapping, e.g. ``{"https": "http://proxy.example.org:3128"}`` (it may
    hold proxy credentials, so it is left out of the repr)."""

    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    proxies: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.client_key and not self.client_cert:
            raise ValueError("a client key needs its client certificate")
        if not isinstance(self.proxies, Mapping):
            raise ValueError('proxies must be a mapping such as {"https": "http://proxy.example.org:3128"}')

    def requests_options(self) -> dict:
        """``verify``, ``cert`` and ``proxies`` for ``requests.Session.request``."""
        cert = (self.client_cert, self.client_key) if self.client_key else self.client_cert
        return {"verify": self.ca_bundle or True, "cert": cert, "proxies": dict(self.proxies)}

    def git_config(self, url: str) -> dict[str, str]:
        """git configuration (``key: value``) making git reach ``url`` as requests does with these settings."""
        config: dict[str, str] = {}
        if self.ca_bundle:
            config["http.sslCAPath" if Path(self.ca_bundle).is_dir() else "http.sslCAInfo"] = self.ca_bundle
        if self.client_cert:
            config["http.sslCert"] = self.client_cert
            config["http.sslKey"] = self.client_key or self.client_cert
        proxy = requests.utils.select_proxy(url, dict(self.proxies))
        if proxy:
            config["http.proxy"] = proxy
        return config


@dataclass(frozen=True)
class RetryPolicy:
    """How requests to GitLab are retried, one policy for the REST client and the ref-advertisement read, built from
    the GitLab settings' ``retries`` and ``backoff_factor`` (:attr:`imrt_sync.config.GitLabSettings.retry_policy`).

    ``retries``: attempts after the first, with urllib3's exponential back-off from ``backoff_factor`` (a 429's or
    503's ``Retry-After`` is honoured). A TLS failure is never retried: a certificate that does not verify stays so.
    """

    retries: int
    backoff_factor: float

    def reads(self) -> Retry:
        """Reads (and DELETE, which may be repeated): on 429, 5xx, timeouts and dropped connections."""
        return Retry(
            total=self.retries,
            backoff_factor=self.backoff_factor,
            status_forcelist=RETRY_STATUSES,
            other=0,
            allowed_methods=frozenset({"GET", "HEAD", "DELETE"}),
            raise_on_status=False,
        )

    def queries(self) -> Retry:
        """GraphQL queries: POSTs that change nothing, so retried as reads are."""
        return Retry(
            total=self.retries,
            backoff_factor=self.backoff_factor,
            status_forcelist=RETRY_STATUSES,
            other=0,
            allowed_methods=frozenset({"POST"}),
            raise_on_status=False,
        )

    def writes(self) -> Retry:
        """Creations (POST): only where GitLab cannot have acted, a 429 and a connection that failed."""
        return Retry(
            total=self.retries,
            connect=self.retries,
            read=0,
            other=0,
            backoff_factor=self.backoff_factor,
            status_forcelist=frozenset({429}),
            allowed_methods=frozenset({"POST"}),
            raise_on_status=False,
        )


def tls_failure(url: str, error: BaseException) -> str:
    """A message for a failed TLS connection: the host, what TLS said, and where the CA bundle is configured.

    Only the host and the TLS library's reason are named: no URL query, header or proxy credential."""
    parts = urlsplit(url)
    return (
        f"TLS connection to {parts.scheme}://{parts.netloc} failed: {_tls_reason(error)}. GitLab's certificate must "
        'chain to a CA of the configured CA bundle (the gitlab_default connection\'s extra "verify": '
        '"/path/to/ca.pem"), or of the system\'s trust store when none is configured'
    )


def _tls_reason(error: BaseException) -> str:
    """The innermost ``ssl.SSLError``'s reason in the exception, its arguments, causes and urllib3 reasons."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            return current.reason or type(current).__name__
        linked = [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return type(error).__name__

"""Request counters and injectable faults, both keyed by endpoint template (``GET /api/v4/projects/:id``)."""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

FAULT_KINDS = ("latency", "status", "drop", "truncate")
_REQUIRED_PARAMS = {"latency": ("seconds",), "status": ("status",), "drop": (), "truncate": ()}
_ALLOWED_PARAMS = {
    "latency": {"seconds"},
    "status": {"status", "retry_after", "body", "headers"},
    "drop": set(),
    "truncate": {"keep"},
}


class Counters:
    """Thread-safe request counts per endpoint template."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def increment(self, endpoint: str) -> None:
        with self._lock:
            self._counts[endpoint] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


@dataclass
class Fault:
    """One fault rule. ``endpoint`` matches an endpoint template exactly; ``path_regex`` searches the request path.

    ``times`` is how many more requests it affects (None: until cleared).
    Kinds and their parameters:
      - ``latency``: ``seconds`` to wait before answering;
      - ``status``: answer ``status`` instead (``retry_after`` seconds for 429, optional ``body`` / ``headers``);
      - ``drop``: close the connection without any response;
      - ``truncate``: listings return fewer items than their headers promise (``keep`` items; default one fewer).
    """

    id: int
    kind: str
    endpoint: str | None = None
    path_regex: re.Pattern | None = None
    times: int | None = None
    params: dict = field(default_factory=dict)
    hits: int = 0

    def matches(self, endpoint: str, path: str) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        return self.path_regex is None or bool(self.path_regex.search(path))

    def describe(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "path_regex": self.path_regex.pattern if self.path_regex else None,
            "times": self.times,
            "hits": self.hits,
            **self.params,
        }


class Faults:
    """Thread-safe set of fault rules; each matching request uses up one of a rule's ``times``."""

    def __init__(self, known_endpoints: Iterable[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self.known_endpoints = frozenset(known_endpoints) if known_endpoints is not None else None

    def add(
        self,
        endpoint: str | re.Pattern | None,
        kind: str,
        *,
        times: int | None = None,
        path_regex: str | re.Pattern | None = None,
        **params: object,
    ) -> Fault:
        """Add a rule for ``endpoint`` (a template string, or a compiled regex searched in the request path)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        missing = [p for p in _REQUIRED_PARAMS[kind] if p not in params]
        unknown = set(params) - _ALLOWED_PARAMS[kind]
        if missing or unknown:
            raise ValueError(f"fault {kind!r}: missing parameters {missing}, unknown parameters {sorted(unknown)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for unlimited)")
        if isinstance(endpoint, re.Pattern):
            endpoint, path_regex = None, endpoint
        if endpoint is None and path_regex is None:
            raise ValueError("a fault needs an endpoint template or a path regex")
        if endpoint is not None and self.known_endpoints is not None and endpoint not in self.known_endpoints:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(self.known_endpoints)}")
        if isinstance(path_regex, str):
            path_regex = re.compile(path_regex)
        with self._lock:
            fault = Fault(next(self._ids), kind, endpoint, path_regex, times, dict(params))
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [fault.describe() for fault in self._faults]

    def take(self, endpoint: str, path: str, kinds: Iterable[str]) -> dict[str, Fault]:
        """For each of ``kinds``, the first rule matching this request, using up one of its ``times``."""
        wanted = set(kinds)
        taken: dict[str, Fault] = {}
        with self._lock:
            for fault in self._faults:
                if fault.kind in wanted and fault.kind not in taken and fault.matches(endpoint, path):
                    taken[fault.kind] = fault
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
            self._faults = [f for f in self._faults if f.times is None or f.times > 0]
        return taken

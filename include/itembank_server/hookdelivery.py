"""Project hooks and system hooks: GitLab's payloads, delivered over HTTP after the change that fired them.

Interface only for now (the front ends call it; delivery comes next): every method returns at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


class HookDispatcher:
    """Fires GitLab's hooks for changes made through the server's HTTP front ends (git push, REST)."""

    def __init__(self, bank, base_url: Callable[[], str], system_hook_urls: Sequence[str] = ()):
        self.bank = bank
        self._base_url = base_url
        self.system_hook_urls = list(system_hook_urls)

    def push(self, project: Mapping, user: Mapping, before: str, after: str, ref: str) -> None:
        """A push moved ``ref`` of ``project`` from ``before`` to ``after`` (40 zeros: created / deleted)."""

    def project_event(
        self, event_name: str, project: Mapping, user: Mapping | None, *, old_path_with_namespace: str | None = None
    ) -> None:
        """``project_create``, ``project_destroy``, ``project_rename`` or ``project_transfer`` for the system hooks."""

    def close(self) -> None:
        """Stop delivering (pending deliveries are dropped)."""

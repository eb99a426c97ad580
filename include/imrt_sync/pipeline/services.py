"""What every step of a run works with: the settings, a GitLab client, the ``imrt`` database and git access.

Each phase of :mod:`imrt_sync.pipeline` takes a :class:`Services`; the DAG's tasks (``imrt_compat.dag_tasks``) and the
benchmark's direct mode (``devstack.bench.runners``) open one per step with :meth:`Services.open`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from ..config import GitLabSettings, SyncSettings
from ..gitlab import GitLabClient
from ..gitrepo import GitAccess
from ..store import ItemStore


@dataclass
class Services:
    settings: SyncSettings
    gitlab: GitLabClient
    engine: sa.Engine
    git_access: GitAccess

    @property
    def store(self) -> ItemStore:
        return ItemStore(self.engine, lock_wait_seconds=self.settings.lock_wait_seconds)

    @classmethod
    @contextmanager
    def open(cls, settings: SyncSettings, gitlab_settings: GitLabSettings, engine: sa.Engine) -> Iterator[Services]:
        """The services of one step: a GitLab client (closed at the end) and git access with the same token and
        transport, over the caller's engine (the caller disposes of it)."""
        with GitLabClient(gitlab_settings) as gitlab:
            yield cls(settings, gitlab, engine, GitAccess.for_gitlab(gitlab_settings, settings.git_timeout))

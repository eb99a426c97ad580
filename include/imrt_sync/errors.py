"""Errors of the item sync domain, and the one decision whether a failure is worth trying again.

Every domain error of ``imrt_sync`` and ``imrt_compat`` is an :class:`ImrtError`, on one of two branches:

* :class:`PermanentError`: trying again gets the same failure until someone fixes something (``item.json``, a
  setting, the schema, the sync user's access);
* :class:`TransientError`: the failure may go away by itself (a held project lock, git unreachable).

A class whose failures can be either sets ``transient`` per instance: :class:`~imrt_sync.gitlab.GitLabError` is
transient when GitLab did not answer, answered 429 or 5xx, or a paged listing changed while it was read, and
permanent for any other answer (401, 403, 404, a redirect, a certificate that does not verify). Many domain errors
keep a builtin base too (``ValueError``, ``RuntimeError``), for the callers that catch them by it.

:func:`is_transient` decides, for every step that retries: the ``sync`` instances (an item's failure), the hook
fixes of ``dispatch_webhooks``, and every task through ``imrt_compat.dag_tasks`` (Airflow retries a transient
failure and fails a permanent one at once). The real-time path's bounded retries of hook events across runs count
every failure, transient or not (docs/real-time-path.md): what is permanent for a run (lost access) may be fixed
before the next attempt.
"""

from __future__ import annotations


class ImrtError(Exception):
    """Base of the domain errors. ``transient``: the failure may go away by itself, so trying again later makes
    sense."""

    transient: bool = False


class PermanentError(ImrtError):
    """Trying again gets the same failure: something has to be fixed first."""


class TransientError(ImrtError):
    """The failure may go away by itself: trying again later makes sense."""

    transient = True


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may succeed: a domain error says so (``transient``).

    Any other error is transient, as every step treated it before the taxonomy: requests' connection errors and
    timeouts, SQLAlchemy's (the database restarted or unreachable), git's, and an unforeseen bug too. A task then
    spends Airflow's two retries, about a minute and a half, where failing a passing fault at once would fail the run.
    """
    if isinstance(exc, ImrtError):
        return exc.transient
    return True


class ItemValidationError(ValueError, PermanentError):
    """item.json cannot be ingested: a permanent, per-item error.

    Retrying does not help; the item's content has to be fixed in the item bank.
    ``str()`` names the project (and the item id once it is known) and the problem, e.g.
    ``project 17 (item 205030): core.metadata.grade must be a string or null, got list``.
    """

    def __init__(self, project_id: int, problem: str, item_id: str | None = None) -> None:
        self.project_id = project_id
        self.item_id = item_id
        self.problem = problem
        super().__init__(project_id, problem, item_id)

    def __str__(self) -> str:
        where = f"project {self.project_id}"
        if self.item_id is not None:
            where += f" (item {self.item_id})"
        return f"{where}: {self.problem}"

    def __repr__(self) -> str:
        return (
            f"ItemValidationError(project_id={self.project_id!r}, problem={self.problem!r}, item_id={self.item_id!r})"
        )

"""Errors of the item sync domain."""

from __future__ import annotations


class ItemValidationError(ValueError):
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
        return f"ItemValidationError(project_id={self.project_id!r}, problem={self.problem!r}, item_id={self.item_id!r})"

"""Every ``item``/``item_git`` row against the bank as :mod:`devstack.soak.oracle` reads it, matched by item id.

* **missing**: an expected item without an ``item`` row, or without its ``item_git`` row;
* **extra**: an ``item`` row whose id no project of the group (and subgroups) holds;
* **stale**: ``item_git.current_commit_hash`` is not the expected commit;
* **wrong author**: at the expected commit, ``item_git.updated_by`` or ``item.updated_by`` is not its author;
* **wrong project**: the row's ``item_git.project_id`` is not the project that holds the item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from .oracle import Expected

CATEGORIES = ("missing", "extra", "stale", "wrong_author", "wrong_project")

ROWS = sa.text(
    "SELECT i.id AS item_id, i.updated_by AS item_author, g.project_id, g.current_commit_hash AS sha, "
    "g.updated_by AS git_author FROM item i LEFT JOIN item_git g ON g.item_key = i.key"
)


@dataclass(frozen=True)
class Row:
    item_id: int
    item_author: str
    project_id: int | None
    sha: str | None
    git_author: str | None


@dataclass(frozen=True)
class Difference:
    category: str
    item_id: int
    project_id: int | None  # the project the bank has it in (expected), else the row's
    expected: Expected | None
    actual: Row | None

    def describe(self) -> str:
        want = (
            f"expected {self.expected.full_path} at {self.expected.sha[:10]} by {self.expected.author}"
            f"{' (head malformed: last well-formed commit)' if self.expected.head_malformed else ''}"
            if self.expected
            else "expected no row"
        )
        have = (
            f"row: project {self.actual.project_id} at {(self.actual.sha or '-')[:10]}, item_git by "
            f"{self.actual.git_author}, item by {self.actual.item_author}"
            if self.actual
            else "no row"
        )
        return f"{self.category}: item {self.item_id}: {want}; {have}"


@dataclass
class Comparison:
    expected: int = 0
    rows: int = 0
    differences: list[Difference] = field(default_factory=list)
    duplicate_ids: list[int] = field(default_factory=list)  # item ids two projects of the bank hold

    def count(self, category: str) -> int:
        return sum(d.category == category for d in self.differences)

    def counts(self) -> dict[str, int]:
        return {category: self.count(category) for category in CATEGORIES}


def read_rows(engine: sa.Engine) -> list[Row]:
    with engine.connect() as conn:
        return [Row(**row) for row in conn.execute(ROWS).mappings()]


def compare(expected: list[Expected], rows: list[Row]) -> Comparison:
    by_id: dict[int, Expected] = {}
    result = Comparison(expected=len(expected), rows=len(rows))
    for item in expected:
        if item.item_id in by_id:
            result.duplicate_ids.append(item.item_id)
        by_id[item.item_id] = item
    actual = {row.item_id: row for row in rows}
    for item_id, item in sorted(by_id.items()):
        result.differences += differences_of(item, actual.get(item_id))
    for item_id, row in sorted(actual.items()):
        if item_id not in by_id:
            result.differences.append(Difference("extra", item_id, row.project_id, None, row))
    return result


def differences_of(item: Expected, row: Row | None) -> list[Difference]:
    def found(category: str) -> Difference:
        return Difference(category, item.item_id, item.project_id, item, row)

    if row is None or row.sha is None:
        return [found("missing")]
    problems = []
    if row.sha != item.sha:
        problems.append(found("stale"))  # its authors are the old commit's: not counted again as wrong author
    elif row.git_author != item.author or row.item_author != item.author:
        problems.append(found("wrong_author"))
    if item.project_id is not None and row.project_id != item.project_id:
        problems.append(found("wrong_project"))
    return problems

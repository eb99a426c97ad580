"""Generated items still being created: published on a ``create_<username>`` branch only, as the 2018 IAT kept them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

from .bank_repos import CommitSpec
from .bank_store import ItemBank, ProjectSpec
from .item_documents import AUTHORS, ITEM_TYPES
from .item_histories import GeneratedItem

BEING_CREATED_SHARE = 0.02
"""The share of a generated bank's items still being created (item.json on a create_<user> branch only)."""


@dataclass(frozen=True)
class ItemBeingCreated:
    """A generated item its author has not published yet, as the 2018 IAT kept it: the project's default branch
    holds only a README, and the item's whole history (``item.commits``) is on the ``create_<username>`` branch
    (docs/how-a-run-works.md, "Items still being created")."""

    item: GeneratedItem
    branch: str
    readme: CommitSpec

    def project_spec(self) -> ProjectSpec:
        """The project with its default branch only: the create branch is pushed once the project exists."""
        return ProjectSpec(self.item.item_id, (self.readme,), created_at=self.readme.committed_at)


def choose_items_being_created(items: list[GeneratedItem], share: float, seed: int) -> dict[str, ItemBeingCreated]:
    """``floor(share × len(items))`` of ``items``, the same for the same ``seed``, turned into items being created,
    by item id. Only plain items are chosen: stimuli and tutorials, which other items link to, stay published."""
    if not 0 <= share <= 1:
        raise ValueError(f"the share of items being created must be in [0, 1], not {share!r}")
    plain = [item for item in items if item.type in ITEM_TYPES]
    wanted = min(len(plain), math.floor(share * len(items)))
    chosen = random.Random(f"being-created-{seed}").sample(plain, k=wanted)
    return {item.item_id: item_being_created(item) for item in chosen}


def item_being_created(item: GeneratedItem) -> ItemBeingCreated:
    """``item`` not published yet: a README on the default branch, a few minutes before its creator's first commit,
    and its history on ``create_<creator's username>``."""
    first = item.commits[0]
    username = next(user for name, _, user in AUTHORS if name == first.author_name)
    assert first.committed_at is not None
    readme = CommitSpec(
        {"README.md": f"# Item {item.item_id}\n"},
        "Initial commit",
        first.author_name,
        first.author_email,
        first.committed_at - timedelta(minutes=5),
    )
    return ItemBeingCreated(item, f"create_{username}", readme)


def push_create_branches(bank: ItemBank, projects: list[dict], being_created: dict[str, ItemBeingCreated]) -> None:
    """Write each item being created's history on its create branch (which starts from the default branch's head)."""
    for project in projects:
        created = being_created.get(project["path"])
        if created is not None:
            bank.push_commits(project["id"], created.item.commits, branch=created.branch)

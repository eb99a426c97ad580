"""Deterministic synthetic item banks shaped like the legacy IAT ``item.json`` documents.

:func:`generate_items` draws the items (which types, subjects and grades, which items link to which stimuli,
tutorials and enemies, each item's document and history) from one seed; :func:`generate_bank` writes them as
projects of an :class:`~itembank_server.bank_store.ItemBank`. The documents are :mod:`itembank_server.item_documents`,
the histories :mod:`itembank_server.item_histories`, the unpublished items :mod:`itembank_server.items_being_created`.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from .bank_store import ItemBank, ProjectSpec
from .item_documents import (
    ALL_TYPES,
    AUTHORS,
    GRADES,
    ITEM_TYPES,
    STIMULUS,
    SUBJECT_OF_TYPE,
    SUBJECTS,
    TUTORIAL,
    make_item_document,
)
from .item_histories import GeneratedItem, commit_history
from .items_being_created import BEING_CREATED_SHARE, choose_items_being_created, push_create_branches


def generate_bank(
    bank: ItemBank,
    group: str,
    count: int = 100,
    seed: int = 0,
    *,
    start_id: int = 200000,
    workers: int | None = None,
    being_created_share: float = BEING_CREATED_SHARE,
    visibility: str = "private",
    shared_objects: bool = False,
) -> list[dict]:
    """Create ``count`` generated item projects in ``group`` (created if missing); return the projects.

    The projects have ``visibility`` (lowered to the group's if the group is less visible).

    ``floor(being_created_share × count)`` of them, chosen by ``seed``, are items still being created (see
    :func:`choose_items_being_created`): 6 of the demo's 300, none in a bank of fewer than 50 items.

    ``shared_objects``: the repositories share one object store (see :meth:`ItemBank.create_projects`): the same
    projects, commits and shas, written fast enough for 100,000 items.
    """
    items = generate_items(count, seed, start_id=start_id)
    being_created = choose_items_being_created(items, being_created_share, seed)
    specs = [
        replace(being_created[item.item_id].project_spec(), visibility=visibility)
        if item.item_id in being_created
        else ProjectSpec(item.item_id, item.commits, created_at=item.commits[0].committed_at, visibility=visibility)
        for item in items
    ]
    projects = bank.create_projects(group, specs, workers=workers, shared_objects=shared_objects)
    push_create_branches(bank, projects, being_created)
    return projects


def generate_items(count: int, seed: int = 0, *, start_id: int = 200000) -> list[GeneratedItem]:
    """The items ``generate_bank`` writes, without writing them: same ``seed``, same items."""
    rng = random.Random(seed)
    types = _plan_types(count, rng)
    ids = [str(start_id + n) for n in range(count)]
    typed = list(zip(ids, types, strict=True))  # one planned type per id
    subjects = {item_id: SUBJECT_OF_TYPE.get(t) or rng.choice(SUBJECTS) for item_id, t in typed}
    grades = {item_id: rng.choice(GRADES) for item_id in ids}
    stimuli = {subject: [i for i, t in typed if t == STIMULUS and subjects[i] == subject] for subject in SUBJECTS}
    tutorials = [i for i, t in typed if t == TUTORIAL]
    plain_items = [i for i, t in typed if t in ITEM_TYPES]
    generated = []
    for item_id, item_type in typed:
        subject = subjects[item_id]
        links = _draw_links(item_id, item_type, rng, stimuli[subject], tutorials, plain_items, subject)
        if links.get("stimulus_id"):
            subjects[item_id] = subjects[links["stimulus_id"]]
            grades[item_id] = grades[links["stimulus_id"]]
        author = rng.choice(AUTHORS)
        document = make_item_document(
            item_id, item_type, rng, subject=subjects[item_id], grade=grades[item_id], item_author=author[2], **links
        )
        generated.append(GeneratedItem(item_id, item_type, document, commit_history(document, author, rng)))
    return generated


def _plan_types(count: int, rng: random.Random) -> list[str]:
    """Every type at least once when ``count`` allows it, then a realistic mix (about 8% stimuli, 3% tutorials)."""
    weights = {STIMULUS: 8, TUTORIAL: 3, **{t: 89 / len(ITEM_TYPES) for t in ITEM_TYPES}}
    types = list(ALL_TYPES[:count])
    types += rng.choices(list(weights), weights=list(weights.values()), k=max(0, count - len(types)))
    rng.shuffle(types)
    return types


def _draw_links(
    item_id: str,
    item_type: str,
    rng: random.Random,
    same_subject_stimuli: list[str],
    tutorials: list[str],
    items: list[str],
    subject: str,
) -> dict[str, Any]:
    if item_type not in ITEM_TYPES:
        return {}
    links: dict[str, Any] = {}
    if same_subject_stimuli and rng.random() < (0.6 if subject == "ELA" else 0.2):
        links["stimulus_id"] = rng.choice(same_subject_stimuli)
    if tutorials and rng.random() < (0.7 if item_type in ("eq", "gi", "mi", "htq") else 0.1):
        links["tutorial_id"] = rng.choice(tutorials)
    if len(items) > 1 and rng.random() < 0.1:
        wanted = rng.randint(1, 2)
        candidates = rng.sample(items, k=min(len(items), wanted + 1))
        links["enemy_items"] = sorted([c for c in candidates if c != item_id][:wanted])
    return links

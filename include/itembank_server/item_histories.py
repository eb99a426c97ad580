"""Generated items and their commit histories: who wrote each revision of ``item.json`` and when."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from .bank_repos import CommitSpec
from .item_documents import AUTHORS, BANK_EPOCH, WORKFLOW_STATUSES

ITEM_JSON = "item.json"
_TIMEZONES = (UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=-5)), timezone(timedelta(hours=1)))


@dataclass(frozen=True)
class GeneratedItem:
    """One generated project: its item id (= project path), type, final ``item.json`` and commit history."""

    item_id: str
    type: str
    document: dict
    commits: tuple[CommitSpec, ...]

    @property
    def item_json_commits(self) -> tuple[CommitSpec, ...]:
        return tuple(c for c in self.commits if ITEM_JSON in c.files or ITEM_JSON in c.delete)


def commit_history(document: dict, creator: tuple[str, str, str], rng: random.Random) -> tuple[CommitSpec, ...]:
    """1-3 commits writing ``item.json`` (final one = ``document``), sometimes one more touching another file."""
    revisions = rng.choice((1, 1, 2, 2, 3))
    when = BANK_EPOCH + timedelta(days=rng.randint(0, 2900), seconds=rng.randint(0, 86399))
    commits: list[CommitSpec] = []
    author = creator
    for n in range(revisions):
        if n:
            author = rng.choice([a for a in AUTHORS if a != author])  # each revision by someone else
        name, email, _ = author
        version = _earlier_revision(document, revisions - 1 - n)
        message = "Create item" if n == 0 else rng.choice(["Update item", "Update workflow status", "Edit content"])
        commits.append(CommitSpec({ITEM_JSON: version}, message, name, email, _in_random_timezone(when, rng)))
        when += timedelta(hours=rng.randint(1, 24 * 60), seconds=rng.randint(0, 3599))
    if rng.random() < 0.35:
        position = rng.randint(1, len(commits))
        name, email, _ = rng.choice(AUTHORS)
        files, message = _side_file(document, rng)
        when_side = commits[position - 1].committed_at + timedelta(minutes=rng.randint(1, 600))  # type: ignore[operator]
        side_commit = CommitSpec(files, message, name, email, _in_random_timezone(when_side, rng))
        commits.insert(position, side_commit)
        for later in range(position + 1, len(commits)):  # keep dates increasing along the history
            if commits[later].committed_at <= when_side:  # type: ignore[operator]
                bumped = when_side + timedelta(minutes=later - position)
                commits[later] = CommitSpec(
                    commits[later].files,
                    commits[later].message,
                    commits[later].author_name,
                    commits[later].author_email,
                    _in_random_timezone(bumped, rng),
                )
    return tuple(commits)


def _earlier_revision(document: dict, steps_back: int) -> dict:
    if steps_back == 0:
        return document
    revision = json.loads(json.dumps(document))  # a deep copy, faster than copy.deepcopy for JSON data
    workflow = revision["workflow"]
    index = (
        WORKFLOW_STATUSES.index(workflow["workflowStatusCode"])
        if workflow["workflowStatusCode"] in WORKFLOW_STATUSES
        else 0
    )
    workflow["workflowStatusCode"] = WORKFLOW_STATUSES[max(0, min(index, 7) - steps_back)]
    english = revision["core"]["en"]
    key = "prompt" if "prompt" in english else "content"
    english[key] = english[key] + f"<p>[Draft revision {steps_back}]</p>"
    return revision


def _side_file(document: dict, rng: random.Random) -> tuple[dict, str]:
    attachments = [
        a["fileName"] for section in ("asl", "braille", "cc") for a in document.get(section, {}).get("attachments", [])
    ]
    if attachments and rng.random() < 0.7:
        name = rng.choice(attachments)
        return {name: f"attachment {name}\n".encode()}, f"Upload {name}"
    return {"README.md": f"# Item {document['id']}\n\nType: {document['type']}\n"}, "Update README.md"


def _in_random_timezone(when: datetime, rng: random.Random) -> datetime:
    return when.astimezone(rng.choice(_TIMEZONES))

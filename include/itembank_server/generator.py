"""Deterministic synthetic item banks shaped like the legacy IAT ``item.json`` documents."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .gitrepo import CommitSpec
from .store import ItemBank, ProjectSpec

ITEM_TYPES = ("mc", "ms", "ebsr", "sa", "er", "eq", "gi", "mi", "htq", "wer")
STIMULUS = "stim"
TUTORIAL = "tut"
ALL_TYPES = ITEM_TYPES + (STIMULUS, TUTORIAL)
SUBJECTS = ("Math", "ELA")
GRADES = ("3", "4", "5", "6", "7", "8", "11")
WORKFLOW_STATUSES = (
    "Draft",
    "InternalReview",
    "ContentReview",
    "AccessibilityReview",
    "ReadyForTranslation",
    "FieldTestReady",
    "FieldTested",
    "Operational",
    "Released",
    "Rejected",
    "Retired",
)
ITEM_JSON = "item.json"
FORMAT_VERSION = "iat-5"
# The share of a generated bank's items still being created (item.json on a create_<user> branch only).
BEING_CREATED_SHARE = 0.02

AUTHORS = (
    ("Jane Author", "jane.author@example.com", "jauthor"),
    ("John Doe", "john.doe@example.com", "jdoe"),
    ("María García", "maria.garcia@example.org", "mgarcia"),
    ("Wei Chen", "wei.chen@example.net", "wchen"),
    ("Aisha Okafor", "aisha.okafor@example.com", "aokafor"),
    ("Liam O'Brien", "liam.obrien@example.org", "lobrien"),
    ("Priya Natarajan", "priya.n@example.com", "pnatarajan"),
    ("Tomás Novák", "tomas.novak@example.net", "tnovak"),
    ("Hannah Schmidt", "hannah.schmidt@example.com", "hschmidt"),
    ("Kenji Watanabe", "kenji.watanabe@example.org", "kwatanabe"),
)
_TIMEZONES = (timezone.utc, timezone(timedelta(hours=-7)), timezone(timedelta(hours=-5)), timezone(timedelta(hours=1)))
_EPOCH = datetime(2016, 1, 4, 8, 0, tzinfo=timezone.utc)

_MATH_DOMAINS = {
    "elementary": ("OA", "NBT", "NF", "MD", "G"),
    "middle": ("RP", "NS", "EE", "G", "SP", "F"),
    "high": ("N-RN", "A-SSE", "A-CED", "F-IF", "G-CO", "S-ID"),
}
_ELA_STRANDS = ("RL", "RI", "W", "L", "SL")
_WRITING_PURPOSES = ("Narrative", "Explanatory", "Informational", "Opinion", "Argumentative")
_NOUNS = ("apples", "marbles", "tickets", "books", "stickers", "pencils", "seeds", "coins", "tiles", "cards")
_NAMES = ("Ana", "Ben", "Carla", "Dev", "Emma", "Farid", "Gus", "Hana", "Ivan", "Jo")
_TOPICS = (
    "coral reefs",
    "the Erie Canal",
    "honeybees",
    "volcanoes",
    "a community garden",
    "the first lighthouse",
    "migrating monarchs",
    "a robotics club",
    "desert plants",
    "the history of bicycles",
)
_HAND_SCORED = {"sa", "er", "wer"}
_SUBJECT_OF_TYPE = {"eq": "Math", "gi": "Math", "ebsr": "ELA", "wer": "ELA"}


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


def generate_bank(
    bank: ItemBank,
    group: str,
    count: int = 100,
    seed: int = 0,
    *,
    start_id: int = 200000,
    workers: int | None = None,
    being_created_share: float = BEING_CREATED_SHARE,
) -> list[dict]:
    """Create ``count`` generated item projects in ``group`` (created if missing); return the projects.

    ``floor(being_created_share × count)`` of them, chosen by ``seed``, are items still being created (see
    :func:`choose_items_being_created`): 6 of the demo's 300, none in a bank of fewer than 50 items.
    """
    items = generate_items(count, seed, start_id=start_id)
    being_created = choose_items_being_created(items, being_created_share, seed)
    specs = [
        being_created[item.item_id].project_spec() if item.item_id in being_created
        else ProjectSpec(item.item_id, item.commits, created_at=item.commits[0].committed_at)
        for item in items
    ]
    projects = bank.create_projects(group, specs, workers=workers)
    push_create_branches(bank, projects, being_created)
    return projects


def generate_items(count: int, seed: int = 0, *, start_id: int = 200000) -> list[GeneratedItem]:
    """The items ``generate_bank`` writes, without writing them: same ``seed``, same items."""
    rng = random.Random(seed)
    types = _plan_types(count, rng)
    ids = [str(start_id + n) for n in range(count)]
    subjects = {item_id: _SUBJECT_OF_TYPE.get(t) or rng.choice(SUBJECTS) for item_id, t in zip(ids, types)}
    grades = {item_id: rng.choice(GRADES) for item_id in ids}
    stimuli = {
        subject: [i for i, t in zip(ids, types) if t == STIMULUS and subjects[i] == subject] for subject in SUBJECTS
    }
    tutorials = [i for i, t in zip(ids, types) if t == TUTORIAL]
    plain_items = [i for i, t in zip(ids, types) if t in ITEM_TYPES]
    generated = []
    for item_id, item_type in zip(ids, types):
        links = _links(item_id, item_type, rng, stimuli[subjects[item_id]], tutorials, plain_items, subjects[item_id])
        if links.get("stimulus_id"):
            subjects[item_id] = subjects[links["stimulus_id"]]
            grades[item_id] = grades[links["stimulus_id"]]
        author = rng.choice(AUTHORS)
        document = make_item_document(
            item_id, item_type, rng, subject=subjects[item_id], grade=grades[item_id], item_author=author[2], **links
        )
        generated.append(GeneratedItem(item_id, item_type, document, _history(document, author, rng)))
    return generated


def _plan_types(count: int, rng: random.Random) -> list[str]:
    """Every type at least once when ``count`` allows it, then a realistic mix (about 8% stimuli, 3% tutorials)."""
    weights = {STIMULUS: 8, TUTORIAL: 3, **{t: 89 / len(ITEM_TYPES) for t in ITEM_TYPES}}
    types = list(ALL_TYPES[:count])
    types += rng.choices(list(weights), weights=list(weights.values()), k=max(0, count - len(types)))
    rng.shuffle(types)
    return types


def _links(
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


def make_item_document(
    item_id: str,
    item_type: str,
    rng: random.Random | None = None,
    *,
    subject: str | None = None,
    grade: str | None = None,
    stimulus_id: str | None = None,
    tutorial_id: str | None = None,
    enemy_items: list[str] | tuple[str, ...] = (),
    workflow_status: str | None = None,
    item_author: str | None = None,
    test_administration: bool | None = None,
    asl: bool | None = None,
    braille: bool | None = None,
    cc: bool | None = None,
    spanish: bool | None = None,
) -> dict:
    """A legacy-shaped ``item.json``; unspecified features are drawn from ``rng`` (seeded by the id if None).

    Besides the plain shape, some documents carry what the legacy service also accepted (so that a generated bank
    exercises every path in ``imrt_sync.mapping.MAPPED_PATHS``): nulls in optional fields, booleans written as the
    strings ``"true"``/``"false"``, ``uploadedDate`` without milliseconds or with an offset, and attachments without
    ``uploadedDate``. Metadata carries the grade and targets under the 0.1.46 model names (``intendedGrade``,
    ``{x}Target``) and, with the same values, under the older names (``grade``, ``{x}AssessmentTarget``).
    """
    if item_type not in ALL_TYPES:
        raise ValueError(f"unknown item type {item_type!r}; expected one of {ALL_TYPES}")
    rng = rng or random.Random(item_id)
    subject = subject or _SUBJECT_OF_TYPE.get(item_type) or rng.choice(SUBJECTS)
    grade = grade or rng.choice(GRADES)
    status = workflow_status or rng.choice(WORKFLOW_STATUSES)
    author = item_author or rng.choice(AUTHORS)[2]
    if item_type == TUTORIAL:
        return {
            "id": item_id,
            "type": TUTORIAL,
            "version": FORMAT_VERSION,
            "core": {"en": {"content": _tutorial_content(rng)}},
            "workflow": {"workflowStatusCode": status},
        }
    chance = rng.random
    flags = {
        "asl": chance() < 0.15 if asl is None else asl,
        "braille": chance() < 0.12 if braille is None else braille,
        "cc": chance() < (0.3 if item_type == STIMULUS else 0.08) if cc is None else cc,
        "spanish": chance() < (0.35 if subject == "Math" else 0.05) if spanish is None else spanish,
    }
    if item_type == STIMULUS:
        core: dict[str, Any] = {
            "en": {"content": _stimulus_content(rng, subject)},
            "metadata": _stimulus_metadata(subject, grade, author),
        }
    else:
        core = {
            "stimulusId": stimulus_id,
            "tutorialId": tutorial_id,
            "enemyItems": list(enemy_items),
            "metadata": _item_metadata(rng, item_type, subject, grade, author),
            "en": _item_content(rng, item_type, subject),
        }
        if chance() < 0.4 if test_administration is None else test_administration:
            core["testAdministration"] = _test_administration(rng)
    uploaded = _EPOCH + timedelta(days=rng.randint(30, 2900), seconds=rng.randint(0, 86399))
    return {
        "id": item_id,
        "type": item_type,
        "version": FORMAT_VERSION,
        "core": core,
        "asl": _asl(rng, item_id, item_type, subject, flags["asl"], uploaded),
        "braille": _braille(rng, item_id, flags["braille"], uploaded),
        "cc": _cc(rng, item_id, flags["cc"], uploaded),
        "textToSpeech": {
            "isVisualTTSRequired": "undetermined",
            "isVisualTTSProvided": None if chance() < 0.05 else _boolean(rng, False),
            "isSightTTSProvided": _boolean(rng, chance() < 0.2),
        },
        "workflow": {"workflowStatusCode": status},
        "translations": {"esp": _spanish(rng, item_type, core, flags["spanish"])},
    }


# -- content -------------------------------------------------------------------------------------------


def _math_prompt(rng: random.Random) -> str:
    name, noun = rng.choice(_NAMES), rng.choice(_NOUNS)
    a, b = rng.randint(3, 48), rng.randint(2, 12)
    return f"<p>{name} has {a * b} {noun} and puts them into {b} equal groups. How many {noun} are in each group?</p>"


def _ela_prompt(rng: random.Random) -> str:
    topic = rng.choice(_TOPICS)
    return f"<p>Read the passage about {topic}. Which statement best describes the author's central idea?</p>"


def _prompt(rng: random.Random, subject: str) -> str:
    return _math_prompt(rng) if subject == "Math" else _ela_prompt(rng)


def _options(rng: random.Random, count: int, correct: int) -> list[dict]:
    right = set(rng.sample(range(count), correct))
    rationales = {
        True: "<p>Correct: the student applied the strategy.</p>",
        False: "<p>Incorrect: the student misapplied the strategy.</p>",
    }
    return [
        {
            "text": f"<p>{rng.randint(1, 500)} {rng.choice(_NOUNS)}</p>",
            "rationale": rationales[n in right],
            "isCorrectAnswer": n in right,
        }
        for n in range(count)
    ]


def _rubric(max_points: int) -> list[dict]:
    def understanding(points: int) -> str:
        return "full" if points == max_points else "partial" if points else "no"

    return [
        {
            "scorePoint": str(p),
            "name": f"Score {p}",
            "content": f"<p>Response shows {understanding(p)} understanding.</p>",
        }
        for p in range(max_points, -1, -1)
    ]


def _item_content(rng: random.Random, item_type: str, subject: str) -> dict:
    prompt = _prompt(rng, subject)
    if item_type == "mc":
        return {"prompt": prompt, "options": _options(rng, 4, 1)}
    if item_type == "ms":
        return {"prompt": prompt, "options": _options(rng, rng.randint(5, 6), rng.randint(2, 3))}
    if item_type == "ebsr":
        return {
            "prompt": prompt,
            "parts": [
                {"partId": "A", "prompt": _ela_prompt(rng), "options": _options(rng, 4, 1)},
                {
                    "partId": "B",
                    "prompt": "<p>Which detail from the passage supports the answer to part A?</p>",
                    "options": _options(rng, 5, rng.randint(1, 2)),
                },
            ],
        }
    if item_type in _HAND_SCORED:
        content = {"prompt": prompt, "rubrics": _rubric(4 if item_type == "wer" else 2)}
        if item_type == "wer":
            content["writingTask"] = f"<p>Write an essay about {rng.choice(_TOPICS)} for your classmates.</p>"
        if item_type == "sa":
            content["exemplars"] = [f"<p>Exemplar response {n}.</p>" for n in range(1, rng.randint(2, 3))]
        return content
    if item_type == "eq":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return {
            "prompt": prompt,
            "keypad": rng.choice(["basic", "fractions", "algebra"]),
            "answers": [{"value": str(a * b), "scorePoints": 1}],
        }
    if item_type == "gi":
        return {
            "prompt": prompt,
            "grid": {
                "width": 300,
                "height": 300,
                "scale": rng.choice([1, 2, 5]),
                "tools": rng.sample(["point", "line", "arrow", "polygon"], 2),
            },
            "answers": [{"x": rng.randint(-10, 10), "y": rng.randint(-10, 10)}],
        }
    if item_type == "mi" and subject == "ELA":
        rows = [f"<p>{rng.choice(_NAMES)} wrote about {rng.choice(_TOPICS)}.</p>" for _ in range(3)]
        columns = ["<p>Fact</p>", "<p>Opinion</p>"]
        return {
            "prompt": prompt,
            "rows": rows,
            "columns": columns,
            "answers": [{"row": r, "column": rng.randrange(2)} for r in range(3)],
        }
    if item_type == "mi":
        rows = [f"<p>{rng.randint(1, 99)}/{rng.randint(2, 12)}</p>" for _ in range(3)]
        columns = ["<p>Less than 1</p>", "<p>Equal to 1</p>", "<p>Greater than 1</p>"]
        return {
            "prompt": prompt,
            "rows": rows,
            "columns": columns,
            "answers": [{"row": r, "column": rng.randrange(3)} for r in range(3)],
        }
    # htq: hot text, select the sentences that support a claim
    sentences = [f"The {rng.choice(_NOUNS)} were counted on day {n}." for n in range(1, 6)]
    return {
        "prompt": prompt,
        "interactionType": "selectable",
        "content": "<p>"
        + " ".join(f'<span class="hot-text" data-id="{n}">{s}</span>' for n, s in enumerate(sentences))
        + "</p>",
        "answers": sorted(rng.sample(range(len(sentences)), 2)),
    }


def _stimulus_content(rng: random.Random, subject: str) -> str:
    topic = rng.choice(_TOPICS)
    paragraphs = [
        f"<p>Paragraph {n} about {topic}: {rng.choice(_NAMES)} observed {rng.randint(2, 90)} {rng.choice(_NOUNS)}.</p>"
        for n in range(1, rng.randint(3, 6))
    ]
    title = f"<h2>{topic.title()}</h2>" if subject == "ELA" else f"<h2>Performance Task: {topic.title()}</h2>"
    return title + "".join(paragraphs)


def _tutorial_content(rng: random.Random) -> str:
    tool = rng.choice(["equation editor", "graphing tool", "matching table", "hot text"])
    return f"<p>This tutorial shows how to use the {tool}.</p><p>Select an answer, then select Next.</p>"


# -- metadata ------------------------------------------------------------------------------------------


def _item_metadata(rng: random.Random, item_type: str, subject: str, grade: str, author: str) -> dict:
    metadata: dict[str, str | None] = {
        "subject": subject,
        "intendedGrade": grade,
        "grade": grade,
        "depthOfKnowledge": rng.choice("1234"),
    }
    levels = ["primary", "secondary", "tertiary", "quaternary"]
    filled = 1 + (rng.random() < 0.3) + (rng.random() < 0.1)
    for n, level in enumerate(levels):
        claim, target, domain, standard = _alignment(rng, subject, grade) if n < filled else ("", "", "", "")
        metadata.update(
            {
                f"{level}Claim": claim,
                f"{level}Target": target,
                f"{level}AssessmentTarget": target,
                f"{level}ContentDomain": domain,
                f"{level}CommonCoreStandard": standard,
            }
        )
    writing = subject == "ELA" and item_type in ("er", "wer")
    metadata.update(
        {
            "contentTaskModel": f"Task Model {rng.randint(1, 6)}" if subject == "Math" else "",
            "performanceTask": "Y" if item_type in _HAND_SCORED and rng.random() < 0.3 else "",
            "writingPurpose": rng.choice(_WRITING_PURPOSES) if writing else "",
            "testCategory": "",
            "scoringEngine": "HandScored"
            if item_type in _HAND_SCORED
            else rng.choice(["Automatic with Key", "Automatic with Machine Rubric"]),
            "organizationTypeId": "SBAC",
            "organizationName": "Smarter Balanced",
            "itemAuthor": author,
        }
    )
    if rng.random() < 0.15:
        metadata[rng.choice(_NULLABLE_METADATA)] = None
    return metadata


_NULLABLE_METADATA = ("organizationName", "contentTaskModel", "performanceTask", "writingPurpose", "secondaryClaim")
"""Metadata fields a generated document sometimes has as ``null`` (the mapping stores ``""``)."""


def _alignment(rng: random.Random, subject: str, grade: str) -> tuple[str, str, str, str]:
    claim = rng.choice("1234")
    if subject == "Math":
        band = "elementary" if int(grade) <= 5 else "middle" if int(grade) <= 8 else "high"
        domain = rng.choice(_MATH_DOMAINS[band])
        standard = (
            f"{domain}.{rng.randint(1, 9)}"
            if band == "high"
            else f"{grade}.{domain}.{rng.choice('ABC')}.{rng.randint(1, 4)}"
        )
        return claim, rng.choice("ABCDEFGHIJKL"), domain, standard
    strand = rng.choice(_ELA_STRANDS)
    level = "11-12" if grade == "11" else grade
    return claim, str(rng.randint(1, 14)), "", f"{strand}.{level}.{rng.randint(1, 9)}"


def _stimulus_metadata(subject: str, grade: str, author: str) -> dict:
    return {
        "subject": subject,
        "intendedGrade": grade,
        "grade": grade,
        "organizationTypeId": "SBAC",
        "organizationName": "Smarter Balanced",
        "itemAuthor": author,
    }


def _test_administration(rng: random.Random) -> dict:
    administrations = []
    for _ in range(rng.randint(1, 2)):
        admin_id = f"{rng.randint(100, 999)}.{rng.choice(['sss', 'ica', 'iab'])}"
        operational = rng.random() < 0.5
        forms = [
            {
                "assessmentType": rng.choice(["Summative", "Interim"]),
                "exposures": rng.randint(0, 5000),
                "formId": f"form.{rng.randint(100, 999)}.{'OP' if operational else 'FT'}",
                "formType": None if rng.random() < 0.05 else "Operational" if operational else "Field Test",
                "sequence": str(rng.randint(1, 40)),
                "status": "Operational" if operational else "Field Test",
            }
            for _ in range(rng.randint(1, 2))
        ]
        administrations.append(
            {
                "administrationId": admin_id,
                "itemVersion": "",
                "timeframe": rng.choice(["Annual", "Spring", "Fall"]),
                "fieldTestData": {"itemDifficultyQuintile": None if rng.random() < 0.1 else str(rng.randint(1, 5))},
                "forms": forms,
            }
        )
    return {"fieldTestAdministrationId": administrations[0]["administrationId"], "administrations": administrations}


# -- accessibility and translations ---------------------------------------------------------------------


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


_UPLOAD_STAMPS = (
    (0.75, _iso),
    (0.08, lambda when: when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
    (0.07, lambda when: when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
    (0.05, lambda when: when.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="seconds")),
)
"""How ``uploadedDate`` is written, by weight: IAT's ``.000Z`` mostly; also no milliseconds, real milliseconds and an
offset. The remaining weight (0.05) is an attachment without ``uploadedDate``."""


def _attachment(rng: random.Random, file_name: str, uploaded: datetime) -> dict:
    pick = rng.random()
    for weight, stamp in _UPLOAD_STAMPS:
        if pick < weight:
            return {"fileName": file_name, "uploadedDate": stamp(uploaded + timedelta(milliseconds=rng.randint(0, 999)))}
        pick -= weight
    return {"fileName": file_name}


def _boolean(rng: random.Random, value: bool) -> bool | str:
    """``value``, sometimes written as the string ``"true"``/``"false"`` (Jackson read both into a Boolean)."""
    return ("true" if value else "false") if rng.random() < 0.1 else value


def _asl(rng: random.Random, item_id: str, item_type: str, subject: str, provided: bool, uploaded: datetime) -> dict:
    prefix = "PaSsaGe" if item_type == STIMULUS else "Item"
    suffix = "STEM" if subject == "Math" else "ELA"
    files = [_attachment(rng, f"{prefix}_{item_id}_ASL_{suffix}.MP4", uploaded)] if provided else []
    return {
        "attachments": files,
        "isAslRequired": "yes" if provided else "undetermined",
        "isAslProvided": _boolean(rng, provided),
    }


def _braille(rng: random.Random, item_id: str, provided: bool, uploaded: datetime) -> dict:
    names = [f"item_{item_id}_enu_uncontracted.brf", f"item_{item_id}_enu_contracted_nemeth.prn"]
    files = [_attachment(rng, name, uploaded) for name in names] if provided else []
    return {
        "attachments": files,
        "isBrailleRequired": "yes" if provided else "undetermined",
        "isBrailleProvided": _boolean(rng, provided),
    }


def _cc(rng: random.Random, item_id: str, provided: bool, uploaded: datetime) -> dict:
    files = [_attachment(rng, f"item_{item_id}_cc.vtt", uploaded)] if provided else []
    associations = (
        [{"audioFileName": f"item_{item_id}_audio.mp3", "ccFileName": f"item_{item_id}_cc.vtt"}] if provided else []
    )
    return {
        "attachments": files,
        "isCcRequired": "yes" if provided else "undetermined",
        "isCcProvided": _boolean(rng, provided),
        "itemCcAudioAssociations": associations,
    }


def _spanish(rng: random.Random, item_type: str, core: dict, provided: bool) -> dict:
    if not provided:
        empty: dict[str, Any] = {"content": ""} if item_type == STIMULUS else {"prompt": "", "options": []}
        return {**empty, "isRequired": "undetermined", "isProvided": _boolean(rng, False)}
    if item_type == STIMULUS:
        return {"content": "<p>Lea el pasaje con atención.</p>", "isRequired": "yes", "isProvided": True}
    options = [
        {
            "text": f"<p>Opción {n + 1}</p>",
            "rationale": "<p>Justificación.</p>",
            "isCorrectAnswer": o["isCorrectAnswer"],
        }
        for n, o in enumerate(core["en"].get("options", []))
    ]
    return {
        "prompt": f"<p>¿Cuántos hay en cada grupo? ({rng.randint(2, 9)})</p>",
        "options": options,
        "isRequired": "yes",
        "isProvided": True,
    }


# -- history -------------------------------------------------------------------------------------------


def _history(document: dict, creator: tuple[str, str, str], rng: random.Random) -> tuple[CommitSpec, ...]:
    """1-3 commits writing ``item.json`` (final one = ``document``), sometimes one more touching another file."""
    revisions = rng.choice((1, 1, 2, 2, 3))
    when = _EPOCH + timedelta(days=rng.randint(0, 2900), seconds=rng.randint(0, 86399))
    commits: list[CommitSpec] = []
    author = creator
    for n in range(revisions):
        if n:
            author = rng.choice([a for a in AUTHORS if a != author])  # each revision by someone else
        name, email, _ = author
        version = _earlier_revision(document, revisions - 1 - n)
        message = "Create item" if n == 0 else rng.choice(["Update item", "Update workflow status", "Edit content"])
        commits.append(CommitSpec({ITEM_JSON: version}, message, name, email, _local(when, rng)))
        when += timedelta(hours=rng.randint(1, 24 * 60), seconds=rng.randint(0, 3599))
    if rng.random() < 0.35:
        position = rng.randint(1, len(commits))
        name, email, _ = rng.choice(AUTHORS)
        files, message = _side_file(document, rng)
        when_side = commits[position - 1].committed_at + timedelta(minutes=rng.randint(1, 600))  # type: ignore[operator]
        commits.insert(position, CommitSpec(files, message, name, email, _local(when_side, rng)))
        for later in range(position + 1, len(commits)):  # keep dates increasing along the history
            if commits[later].committed_at <= when_side:  # type: ignore[operator]
                bumped = when_side + timedelta(minutes=later - position)
                commits[later] = CommitSpec(
                    commits[later].files,
                    commits[later].message,
                    commits[later].author_name,
                    commits[later].author_email,
                    _local(bumped, rng),
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


def _local(when: datetime, rng: random.Random) -> datetime:
    return when.astimezone(rng.choice(_TIMEZONES))


# -- items still being created --------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemBeingCreated:
    """A generated item its author has not published yet, as the 2018 IAT kept it: the project's default branch
    holds only a README, and the item's whole history (``item.commits``) is on the ``create_<username>`` branch
    (reference imrt-iis-2018.md §1.6 step 3 and §6)."""

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
        {"README.md": f"# Item {item.item_id}\n"}, "Initial commit", first.author_name, first.author_email,
        first.committed_at - timedelta(minutes=5),
    )
    return ItemBeingCreated(item, f"create_{username}", readme)


def push_create_branches(bank: ItemBank, projects: list[dict], being_created: dict[str, ItemBeingCreated]) -> None:
    """Write each item being created's history on its create branch (which starts from the default branch's head)."""
    for project in projects:
        created = being_created.get(project["path"])
        if created is not None:
            bank.push_commits(project["id"], created.item.commits, branch=created.branch)

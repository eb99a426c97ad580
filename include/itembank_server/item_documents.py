"""Legacy-shaped ``item.json`` documents (IAT format ``iat-5``): the vocabulary of a generated bank (types, subjects,
grades, workflow statuses, authors), metadata, test administrations, accessibility sections and translations."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .item_content import HAND_SCORED_TYPES, item_content, stimulus_content, tutorial_content

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
FORMAT_VERSION = "iat-5"

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
BANK_EPOCH = datetime(2016, 1, 4, 8, 0, tzinfo=UTC)
"""The earliest moment of a generated bank's history and uploads."""

_MATH_DOMAINS = {
    "elementary": ("OA", "NBT", "NF", "MD", "G"),
    "middle": ("RP", "NS", "EE", "G", "SP", "F"),
    "high": ("N-RN", "A-SSE", "A-CED", "F-IF", "G-CO", "S-ID"),
}
_ELA_STRANDS = ("RL", "RI", "W", "L", "SL")
_WRITING_PURPOSES = ("Narrative", "Explanatory", "Informational", "Opinion", "Argumentative")
SUBJECT_OF_TYPE = {"eq": "Math", "gi": "Math", "ebsr": "ELA", "wer": "ELA"}
"""Item types written for one subject only; the others are Math or ELA."""


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
    subject = subject or SUBJECT_OF_TYPE.get(item_type) or rng.choice(SUBJECTS)
    grade = grade or rng.choice(GRADES)
    status = workflow_status or rng.choice(WORKFLOW_STATUSES)
    author = item_author or rng.choice(AUTHORS)[2]
    if item_type == TUTORIAL:
        return {
            "id": item_id,
            "type": TUTORIAL,
            "version": FORMAT_VERSION,
            "core": {"en": {"content": tutorial_content(rng)}},
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
            "en": {"content": stimulus_content(rng, subject)},
            "metadata": _stimulus_metadata(subject, grade, author),
        }
    else:
        core = {
            "stimulusId": stimulus_id,
            "tutorialId": tutorial_id,
            "enemyItems": list(enemy_items),
            "metadata": _item_metadata(rng, item_type, subject, grade, author),
            "en": item_content(rng, item_type, subject),
        }
        if chance() < 0.4 if test_administration is None else test_administration:
            core["testAdministration"] = _test_administration(rng)
    uploaded = BANK_EPOCH + timedelta(days=rng.randint(30, 2900), seconds=rng.randint(0, 86399))
    return {
        "id": item_id,
        "type": item_type,
        "version": FORMAT_VERSION,
        "core": core,
        "asl": _asl_section(rng, item_id, item_type, subject, flags["asl"], uploaded),
        "braille": _braille_section(rng, item_id, flags["braille"], uploaded),
        "cc": _cc_section(rng, item_id, flags["cc"], uploaded),
        "textToSpeech": {
            "isVisualTTSRequired": "undetermined",
            "isVisualTTSProvided": None if chance() < 0.05 else _boolean_sometimes_as_text(rng, False),
            "isSightTTSProvided": _boolean_sometimes_as_text(rng, chance() < 0.2),
        },
        "workflow": {"workflowStatusCode": status},
        "translations": {"esp": _spanish_translation(rng, item_type, core, flags["spanish"])},
    }


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
            "performanceTask": "Y" if item_type in HAND_SCORED_TYPES and rng.random() < 0.3 else "",
            "writingPurpose": rng.choice(_WRITING_PURPOSES) if writing else "",
            "testCategory": "",
            "scoringEngine": "HandScored"
            if item_type in HAND_SCORED_TYPES
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


def _iat_timestamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


_UPLOAD_STAMPS = (
    (0.75, _iat_timestamp),
    (0.08, lambda when: when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    (0.07, lambda when: when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
    (0.05, lambda when: when.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="seconds")),
)
"""How ``uploadedDate`` is written, by weight: IAT's ``.000Z`` mostly; also no milliseconds, real milliseconds and an
offset. The remaining weight (0.05) is an attachment without ``uploadedDate``."""


def _attachment_entry(rng: random.Random, file_name: str, uploaded: datetime) -> dict:
    pick = rng.random()
    for weight, stamp in _UPLOAD_STAMPS:
        if pick < weight:
            return {
                "fileName": file_name,
                "uploadedDate": stamp(uploaded + timedelta(milliseconds=rng.randint(0, 999))),
            }
        pick -= weight
    return {"fileName": file_name}


def _boolean_sometimes_as_text(rng: random.Random, value: bool) -> bool | str:
    """``value``, sometimes written as the string ``"true"``/``"false"`` (Jackson read both into a Boolean)."""
    return ("true" if value else "false") if rng.random() < 0.1 else value


def _asl_section(
    rng: random.Random, item_id: str, item_type: str, subject: str, provided: bool, uploaded: datetime
) -> dict:
    prefix = "PaSsaGe" if item_type == STIMULUS else "Item"
    suffix = "STEM" if subject == "Math" else "ELA"
    files = [_attachment_entry(rng, f"{prefix}_{item_id}_ASL_{suffix}.MP4", uploaded)] if provided else []
    return {
        "attachments": files,
        "isAslRequired": "yes" if provided else "undetermined",
        "isAslProvided": _boolean_sometimes_as_text(rng, provided),
    }


def _braille_section(rng: random.Random, item_id: str, provided: bool, uploaded: datetime) -> dict:
    names = [f"item_{item_id}_enu_uncontracted.brf", f"item_{item_id}_enu_contracted_nemeth.prn"]
    files = [_attachment_entry(rng, name, uploaded) for name in names] if provided else []
    return {
        "attachments": files,
        "isBrailleRequired": "yes" if provided else "undetermined",
        "isBrailleProvided": _boolean_sometimes_as_text(rng, provided),
    }


def _cc_section(rng: random.Random, item_id: str, provided: bool, uploaded: datetime) -> dict:
    files = [_attachment_entry(rng, f"item_{item_id}_cc.vtt", uploaded)] if provided else []
    associations = (
        [{"audioFileName": f"item_{item_id}_audio.mp3", "ccFileName": f"item_{item_id}_cc.vtt"}] if provided else []
    )
    return {
        "attachments": files,
        "isCcRequired": "yes" if provided else "undetermined",
        "isCcProvided": _boolean_sometimes_as_text(rng, provided),
        "itemCcAudioAssociations": associations,
    }


def _spanish_translation(rng: random.Random, item_type: str, core: dict, provided: bool) -> dict:
    if not provided:
        empty: dict[str, Any] = {"content": ""} if item_type == STIMULUS else {"prompt": "", "options": []}
        return {**empty, "isRequired": "undetermined", "isProvided": _boolean_sometimes_as_text(rng, False)}
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

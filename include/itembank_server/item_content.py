"""The question content of generated items: prompts, options, rubrics and answers per item type, passages and
tutorials, in the HTML shape of the legacy IAT ``item.json`` (``core.en``)."""

from __future__ import annotations

import random

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
HAND_SCORED_TYPES = {"sa", "er", "wer"}
"""Item types scored by a human reader with a rubric."""


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


def item_content(rng: random.Random, item_type: str, subject: str) -> dict:
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
    if item_type in HAND_SCORED_TYPES:
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


def stimulus_content(rng: random.Random, subject: str) -> str:
    topic = rng.choice(_TOPICS)
    paragraphs = [
        f"<p>Paragraph {n} about {topic}: {rng.choice(_NAMES)} observed {rng.randint(2, 90)} {rng.choice(_NOUNS)}.</p>"
        for n in range(1, rng.randint(3, 6))
    ]
    title = f"<h2>{topic.title()}</h2>" if subject == "ELA" else f"<h2>Performance Task: {topic.title()}</h2>"
    return title + "".join(paragraphs)


def tutorial_content(rng: random.Random) -> str:
    tool = rng.choice(["equation editor", "graphing tool", "matching table", "hot text"])
    return f"<p>This tutorial shows how to use the {tool}.</p><p>Select an answer, then select Next.</p>"

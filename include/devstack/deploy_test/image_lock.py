"""The project image is the runtime lock: ``pip freeze --all`` inside the built image names exactly the distributions of
``requirements.txt``, each at its locked version (pip, setuptools and wheel aside, and the project's own distribution,
installed from the build context), and ``pip check`` is clean there.

The deploy test runs it right after the images are built. By hand, against an image already built:
``python -m devstack.deploy_test.image_lock [TAG]`` (default ``imrt-airflow:local``; the Docker daemon must be up).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from devstack.locks import ENVIRONMENT_TOOLS, canonical_name, environment_differences, frozen_versions, parse_lock

from . import engine
from .checks import Check

PROJECT_IMAGE = "imrt-airflow:local"  # docker-compose.yaml's x-airflow-common image, built from the Dockerfile
NAME = "the image is the runtime lock (pip freeze, pip check)"


def project_distribution(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as handle:
        return canonical_name(tomllib.load(handle)["project"]["name"])


def image_differences(root: Path, freeze: str) -> list[str]:
    """How the ``pip freeze --all`` output of the image departs from the runtime lock."""
    project = project_distribution(root)
    versions, urls = frozen_versions(freeze)
    differences = environment_differences(parse_lock(root / "requirements.txt"), versions, also_installed={project})
    differences += [f"{name}: installed from {url}" for name, url in sorted(urls.items()) if name != project]
    if project not in versions and project not in urls:
        differences.append(f"{project}: the project's distribution is not installed")
    return differences


def image_python(tag: str, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in a throwaway container of ``tag`` (no network, the image's own user and environment)."""
    return engine.run(
        [engine.DOCKER, "run", "--rm", "--network", "none", "--entrypoint", "python", tag, *args],
        check=False,
        timeout=300,
    )


def check_image_is_the_lock(root: Path, tag: str = PROJECT_IMAGE) -> Check:
    frozen = image_python(tag, "-m", "pip", "freeze", "--all")
    if frozen.returncode != 0:
        return Check(NAME, False, f"pip freeze in {tag} exited {frozen.returncode}: {(frozen.stdout or '')[-1000:]}")
    differences = image_differences(root, frozen.stdout)
    checked = image_python(tag, "-m", "pip", "check")
    check_output = (checked.stdout or "").strip()
    if checked.returncode != 0:
        differences.append(f"pip check exited {checked.returncode}: {check_output[-1000:]}")
    lock = parse_lock(root / "requirements.txt")
    versions, _ = frozen_versions(frozen.stdout)
    tools = ", ".join(f"{name} {versions[name]}" for name in sorted(ENVIRONMENT_TOOLS & set(versions)))
    if differences:
        return Check(NAME, False, f"{tag} departs from requirements.txt:\n         " + "\n         ".join(differences))
    return Check(
        NAME,
        True,
        f"pip freeze --all in {tag}: the {len(lock)} distributions of requirements.txt at their "
        f"locked versions (apache-airflow {lock['apache-airflow'].version}, sqlalchemy "
        f"{lock['sqlalchemy'].version}, fastapi {lock['fastapi'].version}), nothing else but "
        f"{tools} and {project_distribution(root)}; pip check: {check_output}",
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parents[3]
    result = check_image_is_the_lock(root, *(args[:1] or [PROJECT_IMAGE]))
    print(f"[{'PASS' if result.ok else 'FAIL'}] {result.name}\n       {result.evidence}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

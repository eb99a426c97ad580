"""Bare git repositories written with ``git fast-import`` and read with plain git commands."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FileContent = str | bytes | dict | list

DEFAULT_AUTHOR_NAME = "Item Bank"
DEFAULT_AUTHOR_EMAIL = "itembank@example.com"

_REPO_CONFIG = """\
[core]
\trepositoryformatversion = 0
\tfilemode = true
\tbare = true
[uploadpack]
\tallowFilter = true
\tallowAnySHA1InWant = true
[http]
\treceivepack = false
[fastimport]
\tunpackLimit = 0
"""

# Git commands run by this module must not be influenced by the user's or the system's configuration.
GIT_ENV_ISOLATION = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


class GitError(RuntimeError):
    """A git command failed."""


@dataclass(frozen=True)
class CommitSpec:
    """One commit to write: files to add or replace, paths to delete, author and date."""

    files: Mapping[str, FileContent] = field(default_factory=dict)
    message: str = "Update item"
    author_name: str = DEFAULT_AUTHOR_NAME
    author_email: str = DEFAULT_AUTHOR_EMAIL
    committed_at: datetime | None = None
    delete: Sequence[str] = ()


def file_bytes(content: FileContent) -> bytes:
    """The bytes stored for a file value: JSON documents are pretty-printed, text is UTF-8."""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, (dict, list)):
        return (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    raise TypeError(f"unsupported file content type: {type(content).__name__}")


def git_env(git_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, **GIT_ENV_ISOLATION}
    if git_dir is not None:
        env["GIT_DIR"] = str(git_dir)
    return env


def init_bare_repo(path: Path, default_branch: str) -> None:
    """Create a bare repository by writing its skeleton (much faster than spawning ``git init``)."""
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / "config").write_text(_REPO_CONFIG)
    (path / "HEAD").write_text(f"ref: refs/heads/{default_branch}\n")


def is_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def resolve_ref(path: Path, ref: str) -> str | None:
    """The object id a full ref name points at, reading loose and packed refs directly."""
    loose = path / ref
    if loose.is_file():
        return loose.read_text().strip() or None
    packed = path / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            if line and line[0] not in "#^" and line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    return None


def fast_import(
    path: Path, branch: str, commits: Sequence[CommitSpec], *, parent: str | None = None, want_shas: bool = True
) -> list[str]:
    """Append ``commits`` to ``refs/heads/<branch>`` (first one on top of ``parent``); return their shas."""
    if not commits:
        return []
    marks = path / f"fast-import-marks.{uuid.uuid4().hex}"
    args = ["git", "fast-import", "--quiet", "--done"]
    if want_shas:
        args.append(f"--export-marks={marks}")
    stream = _fast_import_stream(branch, commits, parent)
    result = subprocess.run(args, input=stream, env=git_env(path), capture_output=True)
    if result.returncode != 0:
        raise GitError(f"git fast-import failed in {path}: {result.stderr.decode(errors='replace').strip()}")
    if not want_shas:
        return []
    try:
        by_mark = dict(line.split(" ", 1) for line in marks.read_text().split("\n") if line)
    finally:
        marks.unlink(missing_ok=True)
    return [by_mark[f":{n}"].strip() for n in range(1, len(commits) + 1)]


def _fast_import_stream(branch: str, commits: Sequence[CommitSpec], parent: str | None) -> bytes:
    return _commit_chunks(branch, commits, parent, first_mark=1) + b"done\n"


def _commit_chunks(branch: str, commits: Sequence[CommitSpec], parent: str | None, *, first_mark: int) -> bytes:
    """The fast-import commands of ``commits`` on ``branch``, marked ``first_mark`` onwards (the first on top of
    ``parent``; with no parent, on top of whatever the stream last left on ``branch``)."""
    chunks: list[bytes] = []
    for number, commit in enumerate(commits, start=first_mark):
        identity = _identity(commit)
        message = commit.message if commit.message.endswith("\n") else commit.message + "\n"
        chunks.append(f"commit refs/heads/{branch}\nmark :{number}\n".encode())
        chunks.append(b"author " + identity + b"\ncommitter " + identity + b"\n")
        chunks.append(_data(message.encode("utf-8")))
        if number == first_mark and parent:
            chunks.append(f"from {parent}\n".encode())
        for deleted in commit.delete:
            chunks.append(b"D " + _quote_path(deleted) + b"\n")
        for name, content in commit.files.items():
            chunks.append(b"M 100644 inline " + _quote_path(name) + b"\n" + _data(file_bytes(content)))
        chunks.append(b"\n")
    return b"".join(chunks)


SHARED_STORE = "shared-objects.git"
"""Under a bank's root: the object store the repositories of a bank written at once share (git alternates)."""


def write_shared_histories(store: Path, histories: Sequence[Sequence[CommitSpec]]) -> list[str]:
    """Write every history (each its own root commit onwards) into the bare repository ``store`` with one
    ``git fast-import``, streamed history by history (100,000 histories are about 1 GB of commands); return the last
    commit of each. The store keeps no ref: the repositories that use it (:func:`init_linked_repo`) hold the refs,
    so ``store`` must never be garbage-collected on its own."""
    init_bare_repo(store, "main")
    scratch = "refs/heads/bulk-import"
    marks, errors = store / "fast-import-marks", store / "fast-import-errors"
    heads, mark = [], 1
    with open(errors, "wb") as stderr:
        process = subprocess.Popen(
            ["git", "fast-import", "--quiet", "--done", f"--export-marks={marks}"],
            stdin=subprocess.PIPE,
            stderr=stderr,
            env=git_env(store),
        )
        assert process.stdin is not None
        try:
            for commits in histories:
                if not commits:
                    raise ValueError("a shared history needs at least one commit")
                process.stdin.write(f"reset {scratch}\n".encode())  # the next commit starts a new root
                process.stdin.write(_commit_chunks(scratch.removeprefix("refs/heads/"), commits, None, first_mark=mark))
                mark += len(commits)
                heads.append(mark - 1)
            process.stdin.write(b"done\n")
        finally:
            process.stdin.close()
            returncode = process.wait()
    if returncode != 0:
        raise GitError(f"git fast-import failed in {store}: {errors.read_text(errors='replace').strip()}")
    errors.unlink()
    try:
        by_mark = dict(line.split(" ", 1) for line in marks.read_text().split("\n") if line)
    finally:
        marks.unlink(missing_ok=True)
    (store / scratch).unlink(missing_ok=True)
    return [by_mark[f":{n}"].strip() for n in heads]


def init_linked_repo(path: Path, default_branch: str, store: Path, head: str) -> None:
    """A bare repository whose objects are ``store``'s (``objects/info/alternates``, a path relative to its own
    objects directory, so a copy of the whole bank keeps working) and whose ``default_branch`` points at ``head``
    (``packed-refs``). Only what git needs is written (no empty ``objects/pack`` or ``refs/heads``: git makes them
    when it first writes there): four directories and four files, 100,000 repositories in a few GB."""
    (path / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (path / "refs").mkdir(exist_ok=True)
    (path / "config").write_text(_REPO_CONFIG)
    (path / "HEAD").write_text(f"ref: refs/heads/{default_branch}\n")
    packed = f"# pack-refs with: peeled fully-peeled sorted \n{head} refs/heads/{default_branch}\n"
    (path / "packed-refs").write_text(packed)
    relative = os.path.relpath(store / "objects", path / "objects")
    (path / "objects" / "info" / "alternates").write_text(relative + "\n")


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def _identity(commit: CommitSpec) -> bytes:
    for value in (commit.author_name, commit.author_email):
        if any(c in value for c in "<>\n"):
            raise ValueError(f"invalid author field: {value!r}")
    when = commit.committed_at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset_minutes = int(when.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    stamp = f"{int(when.timestamp())} {sign}{hours:02d}{minutes:02d}"
    return f"{commit.author_name} <{commit.author_email}> {stamp}".encode()


def _quote_path(name: str) -> bytes:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts) or "\n" in name:
        raise ValueError(f"invalid repository path: {name!r}")
    if name[0] == '"' or any(c in name for c in ' \\"'):
        return json.dumps(name).encode("utf-8")
    return name.encode("utf-8")


def run_git(path: Path, *args: str) -> bytes:
    result = subprocess.run(["git", *args], env=git_env(path), capture_output=True)
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {path}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def read_blob(path: Path, rev: str, name: str) -> bytes | None:
    result = subprocess.run(["git", "cat-file", "blob", f"{rev}:{name}"], env=git_env(path), capture_output=True)
    return result.stdout if result.returncode == 0 else None


def log(path: Path, rev: str, file_path: str | None = None) -> list[dict]:
    """Commits reachable from ``rev`` (newest first), optionally only those touching ``file_path``."""
    args = ["log", "--format=%H%x00%an%x00%ae%x00%aI%x00%cI%x00%B%x1e", rev]
    if file_path:
        args += ["--", file_path]
    records = run_git(path, *args).decode("utf-8").split("\x1e")
    commits = []
    for record in records:
        record = record.strip("\n")
        if not record:
            continue
        sha, name, email, authored, committed, message = record.split("\x00", 5)
        commits.append(
            {
                "sha": sha,
                "author_name": name,
                "author_email": email,
                "authored_at": datetime.fromisoformat(authored),
                "committed_at": datetime.fromisoformat(committed),
                "message": message.rstrip("\n"),
            }
        )
    return commits


def list_refs(path: Path) -> dict[str, str]:
    """Every ref of the repository (branches, tags, others) with the object id it points at."""
    out = run_git(path, "for-each-ref", "--format=%(refname) %(objectname)").decode("utf-8")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def head_target(path: Path) -> str | None:
    """The ref HEAD points at (``refs/heads/<name>``), None for a detached or missing HEAD."""
    text = (path / "HEAD").read_text().strip() if (path / "HEAD").is_file() else ""
    return text[len("ref: ") :] if text.startswith("ref: ") else None


def set_head(path: Path, branch: str) -> None:
    run_git(path, "symbolic-ref", "HEAD", f"refs/heads/{branch}")


def blob_ids(path: Path, rev: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, blob id)`` of each of ``names`` that is a blob at ``rev``, in the order asked; names that are missing
    or not blobs are left out (one ``git cat-file --batch-check`` for all of them, as Gitaly's ``GetBlobs`` answers
    one call for many revision/path pairs)."""
    if not names:
        return []
    stdin = "".join(f"{rev}:{name}\n" for name in names).encode("utf-8")
    result = subprocess.run(["git", "cat-file", "--batch-check"], input=stdin, env=git_env(path), capture_output=True)
    if result.returncode != 0:
        raise GitError(f"git cat-file --batch-check failed in {path}: {result.stderr.decode(errors='replace').strip()}")
    found = []
    for name, line in zip(names, result.stdout.decode("utf-8").splitlines(), strict=False):
        fields = line.split(" ")
        if len(fields) == 3 and fields[1] == "blob":
            found.append((name, fields[0]))
    return found


def commit_id(path: Path, rev: str) -> str | None:
    """The commit ``rev`` names (a sha, branch, tag or ``HEAD``), None when it names no commit."""
    result = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        env=git_env(path),
        capture_output=True,
    )
    if result.returncode == 1 and not result.stdout:
        return None
    if result.returncode != 0:
        raise GitError(f"git rev-parse {rev} failed in {path}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode("utf-8").strip()


def last_commit_for_path(path: Path, commit: str, file_path: str) -> str | None:
    """The newest commit reachable from ``commit`` that changed ``file_path`` (``.``: the whole tree), as
    ``git log -1 -- <path>`` finds it: history simplification skips commits that leave the path as it was."""
    out = run_git(path, "log", "-1", "--format=%H", commit, "--", file_path or ".").decode("utf-8").strip()
    return out or None


def commit_title(path: Path, commit: str) -> str:
    """The first line of the commit's message."""
    return run_git(path, "log", "-1", "--format=%s", commit).decode("utf-8").rstrip("\n")

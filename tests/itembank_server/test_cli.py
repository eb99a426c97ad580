"""``python -m itembank_server serve``: generate, print where it listens, serve, stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests


def start(root, *extra: str, env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, list[str]]]:
    """Start the server and read its announcement (up to the first token line), keyed by label."""
    process = subprocess.Popen(
        [sys.executable, "-m", "itembank_server", "serve", "--root", str(root), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    announced: dict[str, list[str]] = {}
    for line in process.stdout:  # type: ignore[union-attr]
        key, _, value = line.strip().partition(": ")
        announced.setdefault(key, []).append(value)
        announced.setdefault("lines", []).append(line.strip())
        if key == "token":
            break
    return process, announced


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    return out


def test_serve_generates_serves_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "ITEMBANK_TOKENS": "envtok,other"}
    process, announced = start(tmp_path / "bank", "--generate", "3", "--seed", "5", "--group", "demo", env=env)
    try:
        url = announced["url"][0]
        assert announced["group"] == ["demo"]
        response = requests.get(f"{url}/api/v4/groups/demo/projects", headers={"PRIVATE-TOKEN": "envtok"}, timeout=10)
        assert response.status_code == 200 and response.headers["X-Total"] == "3"
        assert sorted(p["path"] for p in response.json()) == ["200000", "200001", "200002"]
    finally:
        output = stop(process)
    assert "stopped" in output

    process, announced = start(
        tmp_path / "bank",
        "--generate",
        "3",
        "--group",
        "demo",
        "--token",
        "cli-token",
        env={**os.environ, "ITEMBANK_TOKENS": ""},
    )
    try:
        assert announced["token"] == ["cli-token"]
        assert "group demo already has 3 projects; not generating" in announced["lines"]
        response = requests.get(
            f"{announced['url'][0]}/api/v4/groups/demo/projects", headers={"PRIVATE-TOKEN": "cli-token"}, timeout=10
        )
        assert response.headers["X-Total"] == "3", "a restart serves the same bank without regenerating"
    finally:
        stop(process)

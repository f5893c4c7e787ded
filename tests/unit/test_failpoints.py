"""Failpoints: inert unless armed, one-shot (the file goes before the kill), and a typo is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CALL = "from switch.common.failpoints import failpoint; failpoint('refund.after_send'); print('alive')"


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_FAILPOINT")}
    return subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, timeout=30,
                          env={**clean, **env}, check=False)


def test_unarmed_does_nothing() -> None:
    assert run({}).stdout.strip() == "alive"


def test_armed_kills_once_then_runs_normally(tmp_path: Path) -> None:
    armed = tmp_path / "armed"
    armed.touch()
    env = {"SWITCH_FAILPOINT": "refund.after_send", "SWITCH_FAILPOINT_FILE": str(armed)}
    first = run(env)
    assert first.returncode == -signal.SIGKILL and first.stdout == ""
    assert not armed.exists()
    assert run(env).stdout.strip() == "alive"        # the file is gone: a restarted worker runs normally


def test_another_name_armed_does_not_fire(tmp_path: Path) -> None:
    armed = tmp_path / "armed"
    armed.touch()
    result = run({"SWITCH_FAILPOINT": "payment.after_lock", "SWITCH_FAILPOINT_FILE": str(armed)})
    assert result.stdout.strip() == "alive" and armed.exists()


def test_unknown_name_is_refused_at_import(tmp_path: Path) -> None:
    result = run({"SWITCH_FAILPOINT": "payment.after_lunch", "SWITCH_FAILPOINT_FILE": str(tmp_path / "x")})
    assert result.returncode == 1 and "SWITCH_FAILPOINT must be one of" in result.stderr


def test_every_name_is_placed_in_the_code_exactly_once() -> None:
    import re

    from switch.common.failpoints import NAMES

    package = Path(__file__).resolve().parents[2] / "switch"
    source = "".join(path.read_text() for path in package.rglob("*.py") if path.name != "failpoints.py")
    placed = re.findall(r"failpoint(?:_soon)?\(\"([a-z_.]+)\"", source)
    assert sorted(placed) == sorted(NAMES)

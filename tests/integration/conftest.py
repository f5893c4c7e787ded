"""Fixtures of the integration tests beyond the shared session stack (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from switch.dev.devstack import REPO_ROOT, new_run_dir
from tests.integration.solo import SoloStack


@pytest.fixture(scope="session")
def solo_stack() -> Iterator[SoloStack]:
    """A dedicated stack without a switch, for tests that kill, stop or restart things (tests/integration/solo.py).
    Each test starts the switches it needs and stops them before it ends."""
    run_dir = new_run_dir(REPO_ROOT / ".run" / "tests")
    solo = SoloStack(run_dir)
    try:
        solo.start()
        yield solo
    finally:
        solo.stop()
        if not os.environ.get("KEEP_RUN_DIR"):
            shutil.rmtree(run_dir, ignore_errors=True)

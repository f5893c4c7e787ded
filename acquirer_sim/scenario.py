"""Scenarios: a timeline of behaviour changes, e.g. "Visa primary down from t=60 s for 30 s".

A scenario is JSON or TOML (see docs/simulator.md); every step is checked when it is loaded (known
network, and its `set` valid on a perfect network), so a typo fails at start-up, not at t=60 s. Steps
are applied in order of `at_s`, counted from the moment the scenario starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import msgspec

from acquirer_sim.behaviour import PERFECT, BehaviourError

logger = logging.getLogger(__name__)

STEPS_MAX = 10_000
AT_S_MAX = 30 * 86_400.0


class Step(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    at_s: Annotated[float, msgspec.Meta(ge=0.0, le=AT_S_MAX)]
    network: str
    set: dict[str, Any]


class Scenario(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    steps: Annotated[list[Step], msgspec.Meta(max_length=STEPS_MAX)]
    name: str = ""


class ScenarioError(ValueError):
    """A scenario that does not load; the text says where."""


def scenario_from(data: Any, networks: Iterable[str]) -> Scenario:
    """Validate a decoded JSON/TOML object as a scenario for these networks."""
    try:
        scenario = msgspec.convert(data, Scenario)
    except msgspec.ValidationError as error:
        raise ScenarioError(str(error)) from None
    known = set(networks)
    for index, step in enumerate(scenario.steps):
        if step.network not in known:
            raise ScenarioError(f"steps[{index}].network must be one of {sorted(known)} - at `$.steps[{index}]`")
        try:
            PERFECT.changed(step.set)
        except BehaviourError as error:
            raise ScenarioError(f"steps[{index}].set: {error}") from None
    return msgspec.structs.replace(scenario, steps=sorted(scenario.steps, key=lambda step: step.at_s))


def load_scenario(path: Path, networks: Iterable[str]) -> Scenario:
    """A scenario file: TOML if it ends in .toml, JSON otherwise."""
    raw = path.read_bytes()
    try:
        data = msgspec.toml.decode(raw) if path.suffix == ".toml" else msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        raise ScenarioError(f"{path}: {error}") from None
    try:
        return scenario_from(data, networks)
    except ScenarioError as error:
        raise ScenarioError(f"{path}: {error}") from None


# Applies one step's changes to one network; raises BehaviourError if they do not validate any more.
ApplyStep = Callable[[str, dict[str, Any]], None]


class ScenarioRunner:
    """Runs one scenario at a time; starting another cancels the one running."""

    def __init__(self, apply: ApplyStep) -> None:
        self._apply = apply
        self._task: asyncio.Task[None] | None = None
        self.scenario: Scenario | None = None
        self.started_at = 0.0
        self.steps_applied = 0

    def start(self, scenario: Scenario) -> None:
        self.stop()
        loop = asyncio.get_running_loop()
        self.scenario = scenario
        self.steps_applied = 0
        self.started_at = loop.time()
        # Steps at 0 s apply before this returns, so a scenario given at start-up is in force when the
        # simulator says READY.
        later = [step for step in scenario.steps if step.at_s > 0]
        for step in scenario.steps[: len(scenario.steps) - len(later)]:
            self._apply_logged(scenario, step)
        self._task = loop.create_task(self._run(scenario, later, self.started_at))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        scenario = self.scenario
        return {
            "name": scenario.name if scenario else None,
            "running": self.running,
            "steps": len(scenario.steps) if scenario else 0,
            "steps_applied": self.steps_applied,
        }

    async def _run(self, scenario: Scenario, steps: list[Step], started_at: float) -> None:
        loop = asyncio.get_running_loop()
        for step in steps:
            delay_s = started_at + step.at_s - loop.time()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            self._apply_logged(scenario, step)

    def _apply_logged(self, scenario: Scenario, step: Step) -> None:
        try:
            self._apply(step.network, step.set)
        except BehaviourError as error:
            # Only possible when a step combines with earlier changes into something invalid.
            logger.error("scenario %r step at %.3f s not applied: %s", scenario.name, step.at_s, error)
            return
        self.steps_applied += 1

"""Operations are fixed lists of steps over one context; this runs them.

A step is ``async def step(ctx, services) -> None``. The steps run in order until one sets the outcome;
then the operation's closing steps run (they store or release the idempotency lock). An unexpected
exception skips them; the engine then drops the Redis lock (Postgres still answers a key that has a row).
With SWITCH_STEP_CPU=1, each step's own CPU time is counted (switch.payments.step_cpu).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from switch.payments import step_cpu
from switch.payments.context import Context, Services

Step = Callable[[Context, Services], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    steps: tuple[Step, ...]
    closing: tuple[Step, ...] = ()


async def run(operation: Operation, ctx: Context, services: Services) -> None:
    measured = step_cpu.enabled
    for step in operation.steps:
        await (_measured(operation, step, ctx, services) if measured else step(ctx, services))
        if ctx.outcome is not None:
            break
    for step in operation.closing:
        await (_measured(operation, step, ctx, services) if measured else step(ctx, services))
    assert ctx.outcome is not None, f"{operation.name} ended without an outcome"


def _measured(operation: Operation, step: Step, ctx: Context, services: Services) -> step_cpu.Timed:
    """The step, awaited through step_cpu.Timed (its own CPU time counted)."""
    return step_cpu.Timed(operation.name, getattr(step, "__name__", "step"), step(ctx, services))  # type: ignore[arg-type]

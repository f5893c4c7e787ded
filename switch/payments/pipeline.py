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
    if step_cpu.enabled:
        await _run_measured(operation, ctx, services)
        return
    for step in operation.steps:
        await step(ctx, services)
        if ctx.outcome is not None:
            break
    for step in operation.closing:
        await step(ctx, services)
    assert ctx.outcome is not None, f"{operation.name} ended without an outcome"


async def _run_measured(operation: Operation, ctx: Context, services: Services) -> None:
    """As run, each step awaited through step_cpu.Timed."""
    name = operation.name
    for step in operation.steps:
        await step_cpu.Timed(name, getattr(step, "__name__", "step"), step(ctx, services))  # type: ignore[arg-type]
        if ctx.outcome is not None:
            break
    for step in operation.closing:
        await step_cpu.Timed(name, getattr(step, "__name__", "step"), step(ctx, services))  # type: ignore[arg-type]
    assert ctx.outcome is not None, f"{operation.name} ended without an outcome"

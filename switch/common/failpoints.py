"""One-shot fault injection for crash drills: kill the process with SIGKILL at a named step of a flow.

A failpoint does nothing unless the process was started with ``SWITCH_FAILPOINT=<name>`` and
``SWITCH_FAILPOINT_FILE=<path>``, and it fires only while that file exists. Firing deletes the file first,
then sends SIGKILL to this process, so the worker the supervisor starts in its place runs normally and the
drill can watch recovery. The environment is read once at import: when no failpoint is armed, a call
costs one string comparison.

Every name a flow may pass is listed in ``NAMES`` (docs/architecture.md describes each step); arming an
unknown name fails at import, so a typo in a drill cannot pass silently by never firing.
"""

from __future__ import annotations

import asyncio
import os
import signal

NAMES = frozenset({
    # Authorize (0100) and sale (0200), in the order a payment meets them.
    "payment.after_lock",          # the Redis lock is taken; nothing is written yet
    "payment.after_write_ahead",   # idempotency row + payment (processing) written; nothing sent
    "payment.after_send",          # the request is on the wire; its answer has not arrived
    "payment.after_answer",        # the answer arrived; nothing recorded yet
    "api.after_record",            # any POST: its answer is recorded in Postgres, not yet in Redis's replay cache
    # Capture and cancel: committed (with their outbox row), the 0220 / 0400 not yet sent.
    "capture.after_commit",
    "cancel.after_commit",
    # Outbox: an advice or reversal was sent and answered, not yet marked acknowledged.
    "outbox.before_ack",
    # Refunds.
    "refund.after_reserve",        # amount reserved on the payment, refund row pending; nothing sent
    "refund.after_send",           # the refund's 0200 is on the wire; its answer has not arrived
    "refund.after_answer",         # the answer arrived; nothing recorded yet
})

_ARMED = os.environ.get("SWITCH_FAILPOINT") or None
_FILE = os.environ.get("SWITCH_FAILPOINT_FILE") or ""

if _ARMED is not None and (_ARMED not in NAMES or not _FILE):
    raise RuntimeError("SWITCH_FAILPOINT must be one of switch.common.failpoints.NAMES, with SWITCH_FAILPOINT_FILE set")


def failpoint(name: str) -> None:
    """Die here (SIGKILL) if `name` is armed and its file exists; otherwise do nothing."""
    if name != _ARMED:
        return
    try:
        os.unlink(_FILE)
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def failpoint_soon(name: str, delay_s: float = 0.1) -> None:
    """Like `failpoint`, but `delay_s` from now on the running loop: a kill while the await that follows
    (a network round trip) is under way. The drill slows the simulator's answers beyond `delay_s`."""
    if name != _ARMED:
        return
    asyncio.get_running_loop().call_later(delay_s, failpoint, name)

"""Failure injection for one simulated network: a small typed struct, validated on every change.

`Behaviour` is the whole state of the knobs; a change is a partial dict (`{"error_rate": 0.1}`) merged
into the current struct and validated as a whole, so a bad value never half-applies. `Faults` turns a
behaviour into per-message draws (latency, which fault) with one random generator.

Rates are probabilities per payment message (0100, 0200, 0220/0221, 0400/0420/0421); network
management (0800) is never faulted, so links stay signed on unless a connection knob says otherwise.
"""

from __future__ import annotations

import math
import os
import random
from typing import Annotated, Any, Literal

import msgspec

from switch.iso.framing import Framing

DELAY_MS_MAX = 600_000
MESSAGES_MAX = 1_000_000_000
GARBAGE_BYTES = 48

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
DelayMs = Annotated[int, msgspec.Meta(ge=0, le=DELAY_MS_MAX)]
ResponseCode = Annotated[str, msgspec.Meta(pattern="^[0-9A-Z]{2}$")]
LatencyDistribution = Literal["fixed", "normal", "lognormal"]

# Faults, in the order they are drawn. "error" is decided before the issuer sees the message (nothing
# applies); the others after (the effect applies, the answer is withheld, delayed or mangled).
FAULT_ERROR = "error"
FAULT_NEVER_ANSWER = "never_answer"
FAULT_LATE_ANSWER = "late_answer"
FAULT_GARBAGE = "garbage"
FAULT_DUPLICATE = "duplicate"
FAULT_BAD_MAC = "bad_mac"
FAULT_DISCONNECT = "disconnect"
FAULT_REFUSED = "refused"


class Behaviour(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Knobs of one network. Every default means "behave perfectly"."""

    # Latency of every answer: "fixed" is latency_ms; "normal" has mean latency_ms and latency_stddev_ms;
    # "lognormal" (the long tail) has median latency_ms and shape latency_sigma (1.0: p99 ≈ 10x median).
    # On top of any of them, a spike: latency_spike_rate of answers take latency_spike_ms more.
    latency_distribution: LatencyDistribution = "fixed"
    latency_ms: DelayMs = 0
    latency_stddev_ms: DelayMs = 0
    latency_sigma: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.0
    latency_spike_rate: Rate = 0.0
    latency_spike_ms: DelayMs = 0
    # Answer error_code without applying anything.
    error_rate: Rate = 0.0
    error_code: ResponseCode = "96"
    # Approve and apply, then never answer: the double-charge trap (the switch must reverse).
    drop_rate: Rate = 0.0
    # Apply, then answer after late_answer_ms (set it beyond the switch's timeout).
    late_answer_rate: Rate = 0.0
    late_answer_ms: DelayMs = 0
    # Apply, then send random bytes instead of the answer. Framed: a valid length header around an
    # undecodable payload (the switch counts a decode error); unframed: a broken header (it must drop).
    garbage_rate: Rate = 0.0
    garbage_framed: bool = True
    # Apply, then send the answer twice.
    duplicate_rate: Rate = 0.0
    # Apply, then answer with a wrong MAC (see NetworkServer.corrupt_mac: the MAC code provides it).
    bad_mac_rate: Rate = 0.0
    # Reset a connection when payment message N + 1 arrives on it (unapplied, unanswered); 0: never.
    disconnect_after_messages: Annotated[int, msgspec.Meta(ge=0, le=MESSAGES_MAX)] = 0
    # Network down: open connections are reset, new ones are accepted and reset at once.
    refuse_connections: bool = False

    def __post_init__(self) -> None:
        if self.latency_distribution == "fixed" and (self.latency_stddev_ms or self.latency_sigma):
            raise ValueError("latency_stddev_ms and latency_sigma need latency_distribution normal/lognormal")
        if self.latency_distribution == "normal" and self.latency_sigma:
            raise ValueError("latency_sigma is for latency_distribution lognormal")
        if self.latency_distribution == "lognormal" and self.latency_stddev_ms:
            raise ValueError("latency_stddev_ms is for latency_distribution normal")

    def changed(self, changes: dict[str, Any]) -> Behaviour:
        """A new behaviour with `changes` applied; raises BehaviourError naming the bad field."""
        return behaviour_from({**msgspec.structs.asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


class BehaviourError(ValueError):
    """A behaviour change that does not validate; the text says which field and why."""


def behaviour_from(fields: Any) -> Behaviour:
    if not isinstance(fields, dict):
        raise BehaviourError("behaviour must be a JSON object")
    try:
        return msgspec.convert(fields, Behaviour)
    except msgspec.ValidationError as error:
        raise BehaviourError(str(error)) from None


PERFECT = Behaviour()


class Faults:
    """Draws for one network's current behaviour. `active` is False for a perfect network, so the
    message path pays one attribute read when nothing is injected."""

    def __init__(self, behaviour: Behaviour = PERFECT, rng: random.Random | None = None) -> None:
        self.behaviour = behaviour
        self.active = behaviour != PERFECT
        self._rng = rng or random.Random()

    def error_code(self) -> str | None:
        """The code to answer instead of deciding, or None."""
        behaviour = self.behaviour
        if behaviour.error_rate and self._rng.random() < behaviour.error_rate:
            return behaviour.error_code
        return None

    def after_decision(self) -> str | None:
        """At most one fault for an answer about to be sent: never_answer, late_answer, garbage,
        duplicate or bad_mac. Each is drawn independently, the first hit wins."""
        behaviour = self.behaviour
        random_ = self._rng.random
        for rate, fault in (
            (behaviour.drop_rate, FAULT_NEVER_ANSWER),
            (behaviour.late_answer_rate, FAULT_LATE_ANSWER),
            (behaviour.garbage_rate, FAULT_GARBAGE),
            (behaviour.duplicate_rate, FAULT_DUPLICATE),
            (behaviour.bad_mac_rate, FAULT_BAD_MAC),
        ):
            if rate and random_() < rate:
                return fault
        return None

    def latency_s(self) -> float:
        """How long to hold an answer back, in seconds (0.0: send it now)."""
        behaviour = self.behaviour
        rng = self._rng
        kind = behaviour.latency_distribution
        if kind == "fixed":
            delay_ms = float(behaviour.latency_ms)
        elif kind == "normal":
            delay_ms = rng.gauss(behaviour.latency_ms, behaviour.latency_stddev_ms)
        else:
            delay_ms = behaviour.latency_ms * math.exp(rng.gauss(0.0, behaviour.latency_sigma))
        if behaviour.latency_spike_rate and rng.random() < behaviour.latency_spike_rate:
            delay_ms += behaviour.latency_spike_ms
        return min(max(delay_ms, 0.0), DELAY_MS_MAX) / 1000

    def garbage(self, framing: Framing, framed: bool) -> bytes:
        """Random bytes instead of an answer. The 0xFF lead never decodes as an MTI, nor as a length
        header within frame_size_max (binary) or at all (ASCII)."""
        noise = b"\xff" * 4 + os.urandom(GARBAGE_BYTES)
        if framed:
            return framing.encode_frame(noise)
        return b"\xff" * framing.header_size + noise

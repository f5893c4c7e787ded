"""Simulated card networks: one TCP listener per profile, answering 0800, 0100, 0200, 0220/0221 and
0400/0420/0421 (see `acquirer_sim.issuer` for what each does to the card and its holds).

Per message the work is O(1): decode, one issuer decision, one bounded record, encode. Nothing is
logged per message; counters, records and holds are read through the control API.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from acquirer_sim.behaviour import (
    FAULT_BAD_MAC,
    FAULT_DISCONNECT,
    FAULT_DUPLICATE,
    FAULT_ERROR,
    FAULT_GARBAGE,
    FAULT_LATE_ANSWER,
    FAULT_NEVER_ANSWER,
    FAULT_REFUSED,
    Behaviour,
    Faults,
)
from acquirer_sim.issuer import Decision, Issuer
from switch.common.writes import CoalescedWriter
from switch.iso.framing import Framing, FramingError, framing_for
from switch.iso.mac import (
    MAC_FIELD_PRIMARY,
    MAC_FIELD_SECONDARY,
    MacKeyError,
    derive_session_key,
    generation_of,
    sign,
    verify,
)
from switch.iso.messages import (
    FIELD48_TAG_CVV,
    MTI_AUTHORIZATION_REQUEST,
    MTI_COMPLETION_ADVICE,
    MTI_COMPLETION_ADVICE_REPEAT,
    MTI_FINANCIAL_REQUEST,
    MTI_NETWORK_REQUEST,
    MTI_REVERSAL_ADVICE,
    MTI_REVERSAL_ADVICE_REPEAT,
    MTI_REVERSAL_REQUEST,
    NETWORK_SIGN_ON,
    IsoError,
    decode,
    encode,
    field48_decode,
    is_response,
    parse_original_data_elements,
    parse_replacement_amounts,
    response_for,
)
from switch.iso.profiles import PROFILES, Profile

RECORDS_MAX_DEFAULT = 100_000
DELAYED_ANSWERS_MAX = 100_000  # Per network: answers held back by latency knobs; beyond it they are dropped.
FAULT_OVERFLOW = "delayed_overflow"
INVALID_TRANSACTION = "12"
SECURITY_VIOLATION = "63"  # A bad or missing MAC on a MAC'd network (switch.iso.codes).
FORMAT_ERROR = "30"
PROCESSING_PURCHASE = "00"  # First two digits of field 3.
PROCESSING_REFUND = "20"
COMPLETIONS = frozenset({MTI_COMPLETION_ADVICE, MTI_COMPLETION_ADVICE_REPEAT})
REVERSALS = frozenset({MTI_REVERSAL_REQUEST, MTI_REVERSAL_ADVICE, MTI_REVERSAL_ADVICE_REPEAT})

CardDecider = Callable[..., Decision]


@dataclass(slots=True)
class NetworkStats:
    connections: int = 0
    connections_open: int = 0
    received: int = 0
    answered: int = 0
    dropped: int = 0
    decode_errors: int = 0
    framing_errors: int = 0
    mac_failures: int = 0  # Requests with a bad or missing MAC, answered SECURITY_VIOLATION.
    delayed_pending: int = 0  # Answers scheduled for later and not yet written.
    by_mti: Counter[str] = field(default_factory=Counter)
    by_field39: Counter[str] = field(default_factory=Counter)
    by_response: Counter[tuple[str, str]] = field(default_factory=Counter)  # (request MTI, field 39)
    by_effect: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it would rebuild each Counter from (key, value) pairs and miscount.
        return {
            name: {_label(key): count for key, count in value.items()} if isinstance(value, Counter) else value
            for name, value in ((name, getattr(self, name)) for name in self.__slots__)
        }


def _label(key: str | tuple[str, ...]) -> str:
    return key if isinstance(key, str) else ":".join(key)


class Records:
    """The last `records_max` messages received and what they did. Card data: last 4 digits only."""

    def __init__(self, records_max: int = RECORDS_MAX_DEFAULT) -> None:
        assert records_max > 0
        self.records_max = records_max
        self._records: deque[dict[str, Any]] = deque(maxlen=records_max)
        self._sequence = 0

    def add(self, record: dict[str, Any]) -> None:
        self._sequence += 1
        record["seq"] = self._sequence
        self._records.append(record)

    def query(self, *, limit: int, **filters: str) -> list[dict[str, Any]]:
        """Newest first. A linear scan: fine for a test harness, never on the message path."""
        wanted = [(key, value) for key, value in filters.items() if value is not None]
        found: list[dict[str, Any]] = []
        for record in reversed(self._records):
            if all(record.get(key) == value for key, value in wanted):
                found.append(record)
                if len(found) >= limit:
                    break
        return found


class NetworkServer:
    """One simulated network: its profile, failure behaviour and stats. Shares the issuer and records."""

    def __init__(self, profile: Profile, issuer: Issuer, records: Records) -> None:
        self.profile = profile
        self.framing: Framing = framing_for(profile)
        self.issuer = issuer
        self.records = records
        self.faults = Faults()
        self.fault: str | None = None  # The fault drawn for the message being handled, for its record.
        self.stats = NetworkStats()
        self.server: asyncio.Server | None = None
        self.connections: set[SimProtocol] = set()
        # This network's MAC master key (the far end's copy); None: MAC'd requests all fail verification.
        self.mac_master_key: bytes | None = None

    @property
    def behaviour(self) -> Behaviour:
        return self.faults.behaviour

    def set_behaviour(self, changes: dict[str, Any]) -> Behaviour:
        """Apply a partial change (validated whole; raises BehaviourError). Turning refuse_connections on
        resets the connections already open, as a network going down would."""
        old = self.faults.behaviour
        new = old.changed(changes)
        self.faults = Faults(new)
        if new.refuse_connections and not old.refuse_connections:
            for connection in list(self.connections):
                connection.abort()
        return new

    def corrupt_mac(self, message: bytes) -> bytes:
        """The bad_mac fault: flip the last byte, which is the MAC field when the profile carries one
        (ISO 8583 puts the MAC last). The MAC code may replace this with something sharper."""
        return message[:-1] + bytes([message[-1] ^ 0x01]) if message else message

    def refuse(self, request: dict[str, Any], field39: str) -> dict[str, Any]:
        """The error fault: answer `field39` without letting the issuer see the request."""
        self.stats.received += 1
        self.stats.by_mti[request.get("t", "")] += 1
        self.stats.by_field39[field39] += 1
        self.stats.by_response[(request.get("t", ""), field39)] += 1
        return self._answer(request, request.get("2", ""), _amount(request.get("4", "")) or 0,
                            Decision(field39, None, "none"))  # fmt: skip

    def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The response to one message, or None if there is nothing to answer."""
        mti = message.get("t", "")
        stats = self.stats
        stats.received += 1
        stats.by_mti[mti] += 1
        if is_response(mti):
            return None  # Answers to requests we never send; nothing to do.
        if mti == MTI_NETWORK_REQUEST:
            response = response_for(message, "00")
        elif mti == MTI_AUTHORIZATION_REQUEST:
            response = self._card_request(message, self.issuer.authorize)
        elif mti == MTI_FINANCIAL_REQUEST:
            kind = message.get("3", "")[:2]
            if kind == PROCESSING_PURCHASE:
                response = self._card_request(message, self.issuer.sale)
            elif kind == PROCESSING_REFUND:
                response = self._card_request(message, self.issuer.refund)
            else:
                response = response_for(message, INVALID_TRANSACTION)
        elif mti in COMPLETIONS or mti in REVERSALS:
            response = self._about_original(message)
        else:
            response = response_for(message, INVALID_TRANSACTION)
        stats.by_field39[response["39"]] += 1
        stats.by_response[(mti, response["39"])] += 1
        return response

    def _card_request(self, request: dict[str, Any], decide: CardDecider) -> dict[str, Any]:
        """0100 or 0200: check the format, let the issuer decide, record it."""
        pan = request.get("2", "")
        amount_minor = _amount(request.get("4", ""))
        if not pan or amount_minor is None:
            return response_for(request, FORMAT_ERROR)
        cvv = None
        if "48" in request:
            try:
                cvv = field48_decode(request["48"]).get(FIELD48_TAG_CVV)
            except IsoError:
                return response_for(request, FORMAT_ERROR)
        if cvv is not None and not (cvv.isdigit() and len(cvv) in (3, 4)):
            return response_for(request, "N7")
        decision = decide(
            pan=pan,
            amount_minor=amount_minor,
            terminal_id=request.get("41", "").strip(),
            stan=request.get("11", ""),
            transmission_dt=request.get("7", ""),
            rrn=request.get("37", ""),
            network=self.profile.name,
            currency=request.get("49", ""),
        )
        return self._answer(request, pan, amount_minor, decision)

    def _about_original(self, request: dict[str, Any]) -> dict[str, Any]:
        """0220/0221 completion or 0400/0420/0421 reversal: find the original by field 90 and field 41."""
        amount_minor = _amount(request.get("4", ""))
        try:
            original_mti, original_stan, original_dt = parse_original_data_elements(request.get("90", ""))
            replacement_minor = parse_replacement_amounts(request["95"]) if "95" in request else None
        except IsoError:
            return response_for(request, FORMAT_ERROR)
        if amount_minor is None:
            return response_for(request, FORMAT_ERROR)
        original = {
            "terminal_id": request.get("41", "").strip(),
            "original_mti": original_mti,
            "original_stan": original_stan,
            "original_dt": original_dt,
        }
        if request["t"] in COMPLETIONS:
            captured_minor = amount_minor if replacement_minor is None else replacement_minor
            decision = self.issuer.complete(amount_minor=captured_minor, **original)
        else:
            decision = self.issuer.reverse(replacement_minor=replacement_minor or 0, **original)
        return self._answer(request, request.get("2", ""), amount_minor, decision, original_mti=original_mti)

    def _answer(
        self, request: dict[str, Any], pan: str, amount_minor: int, decision: Decision, **extra: Any
    ) -> dict[str, Any]:
        """Record what one message did (card data: last 4 digits) and build its response."""
        self.records.add({
            "network": self.profile.name, "mti": request["t"], "stan": request.get("11"),
            "rrn": request.get("37"), "terminal_id": request.get("41", "").strip(),
            "card_last4": pan[-4:], "amount_minor": amount_minor, "currency": request.get("49"),
            "field39": decision.field39,
            "auth_code": decision.auth_code, "effect": decision.effect, "held_minor": decision.held_minor,
            "captured_minor": decision.captured_minor, "released_minor": decision.released_minor,
            "refunded_minor": decision.refunded_minor, "reversed_minor": decision.reversed_minor,
            "remaining_minor": decision.remaining_minor, "at": time.time(), "fault": self.fault, **extra,
        })  # fmt: skip
        self.stats.by_effect[decision.effect] += 1
        if decision.auth_code is None:
            return response_for(request, decision.field39)
        return response_for(request, decision.field39, **{"38": decision.auth_code})


def _amount(text: str) -> int | None:
    """Field 4 as an integer, or None when absent or not 12 digits (decoders do not check digits)."""
    if len(text) != 12 or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


class SimProtocol(asyncio.Protocol):
    """One connection from the switch. Answers are coalesced to one write per loop pass."""

    def __init__(self, network: NetworkServer, loop: asyncio.AbstractEventLoop) -> None:
        self._network = network
        self._loop = loop
        self._reader = network.framing.reader()
        self._transport: asyncio.Transport | None = None
        self._writer: CoalescedWriter | None = None
        self._payment_messages = 0  # For disconnect_after_messages.
        # The MAC session key of this connection, derived at each sign-on from the generation it carries.
        self._mac_key: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so this is a cast, not a check.
        self._transport = cast(asyncio.Transport, transport)
        self._writer = CoalescedWriter(self._transport, self._loop)
        self._network.connections.add(self)
        self._network.stats.connections += 1
        self._network.stats.connections_open += 1
        if self._network.faults.behaviour.refuse_connections:
            self._network.stats.by_fault[FAULT_REFUSED] += 1
            self.abort()  # A reset right after accept: the switch sees the network down.

    def connection_lost(self, exc: Exception | None) -> None:
        self._network.connections.discard(self)
        self._network.stats.connections_open -= 1
        self._transport = None
        if self._writer is not None:
            self._writer.discard()

    def data_received(self, data: bytes) -> None:
        network = self._network
        try:
            frames = self._reader.feed(data)
        except FramingError:
            network.stats.framing_errors += 1
            self.abort()
            return
        self._answer(frames)

    def _answer(self, frames: Iterable[bytes]) -> None:
        network = self._network
        profile = network.profile
        for frame in frames:
            try:
                request = decode(profile, frame)
            except IsoError:
                network.stats.decode_errors += 1
                continue
            if profile.mac and not self._mac_verified(frame, request):
                # Never acted on. A request is told why (signed when this connection has a key at all).
                if not is_response(request.get("t", "")):
                    refusal = network.refuse(request, SECURITY_VIOLATION)
                    network.stats.answered += 1
                    self.send(network.framing.encode_frame(self._encode(refusal)))
                continue
            if network.faults.active:
                if not self._answer_with_faults(request):
                    return  # The connection was reset.
                continue
            response = network.handle(request)
            if response is None:
                continue
            payload = network.framing.encode_frame(self._encode(response))
            network.stats.answered += 1
            self.send(payload)

    def _answer_with_faults(self, request: dict[str, Any]) -> bool:
        """The slow path, when any knob is set. Returns False if the connection was reset."""
        network = self._network
        faults = network.faults
        behaviour = faults.behaviour
        stats = network.stats
        mti = request.get("t", "")
        fault = error_code = None
        # Faults apply to payment messages only, so the link itself stays signed on.
        if mti != MTI_NETWORK_REQUEST and not is_response(mti):
            self._payment_messages += 1
            if behaviour.disconnect_after_messages and self._payment_messages > behaviour.disconnect_after_messages:
                stats.by_fault[FAULT_DISCONNECT] += 1
                self.abort()
                return False
            error_code = faults.error_code()
            fault = FAULT_ERROR if error_code is not None else faults.after_decision()
        network.fault = fault
        try:
            response = network.handle(request) if error_code is None else network.refuse(request, error_code)
        finally:
            network.fault = None
        if response is None:
            return True
        if fault is not None:
            stats.by_fault[fault] += 1
        if fault == FAULT_NEVER_ANSWER:
            stats.dropped += 1
            return True
        message = self._encode(response)
        if fault == FAULT_BAD_MAC:
            message = network.corrupt_mac(message)
        payload = network.framing.encode_frame(message)
        if fault == FAULT_GARBAGE:
            payload = faults.garbage(network.framing, behaviour.garbage_framed)
        elif fault == FAULT_DUPLICATE:
            payload += payload
        stats.answered += 1
        delay_s = behaviour.late_answer_ms / 1000 if fault == FAULT_LATE_ANSWER else faults.latency_s()
        if not delay_s:
            self.send(payload)
        elif stats.delayed_pending >= DELAYED_ANSWERS_MAX:
            stats.by_fault[FAULT_OVERFLOW] += 1  # Bounded memory beats faithful latency.
        else:
            stats.delayed_pending += 1
            self._loop.call_later(delay_s, self._send_delayed, payload)
        return True

    def _mac_verified(self, frame: bytes, request: dict[str, Any]) -> bool:
        """Check the request's MAC with this connection's session key; a sign-on first renews the key."""
        network = self._network
        if request.get("t") == MTI_NETWORK_REQUEST and request.get("70") == NETWORK_SIGN_ON:
            self._mac_key = self._session_key(generation_of(request))
        key = self._mac_key
        if key is None or not verify(network.profile, frame, key):
            network.stats.mac_failures += 1
            return False
        request.pop(MAC_FIELD_PRIMARY, None)
        request.pop(MAC_FIELD_SECONDARY, None)
        return True

    def _session_key(self, generation: int | None) -> bytes | None:
        master_key = self._network.mac_master_key
        if master_key is None or generation is None:
            return None
        try:
            return derive_session_key(master_key, self._network.profile.name, generation)
        except MacKeyError:
            return None

    def _encode(self, response: dict[str, Any]) -> bytes:
        """Encode an answer, signed on a MAC'd network whenever this connection has a session key."""
        profile = self._network.profile
        if profile.mac and self._mac_key is not None:
            return sign(profile, response, self._mac_key)
        return encode(profile, response)

    def _send_delayed(self, payload: bytes) -> None:
        self._network.stats.delayed_pending -= 1
        self.send(payload)

    def send(self, payload: bytes) -> None:
        if self._writer is not None:
            self._writer.write(payload)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class Simulator:
    """All simulated networks, sharing one issuer and one record log."""

    def __init__(
        self,
        records_max: int = RECORDS_MAX_DEFAULT,
        issuer: Issuer | None = None,
        mac_master_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self.issuer = issuer or Issuer()
        self.records = Records(records_max)
        self.networks = {
            name: NetworkServer(profile, self.issuer, self.records) for name, profile in PROFILES.items()
        }
        for name, key in (mac_master_keys or {}).items():
            if name in self.networks:
                self.networks[name].mac_master_key = key

    async def start(self, host: str, ports: dict[str, int], tls: ssl.SSLContext | None = None) -> dict[str, int]:
        """Listen for each network in `ports` (0 picks a free port), over TLS with `tls`; return the ports."""
        loop = asyncio.get_running_loop()
        bound: dict[str, int] = {}
        for name, port in ports.items():
            network = self.networks[name]
            network.server = await loop.create_server(
                functools.partial(SimProtocol, network, loop), host, port, reuse_address=True, ssl=tls
            )
            bound[name] = network.server.sockets[0].getsockname()[1]
        return bound

    def drop_connections(self, name: str) -> int:
        """Abort every open connection of one network (failure injection); returns how many."""
        connections = list(self.networks[name].connections)
        for connection in connections:
            connection.abort()
        return len(connections)

    async def close(self) -> None:
        for network in self.networks.values():
            if network.server is not None:
                network.server.close()
            for connection in list(network.connections):
                connection.abort()
        for network in self.networks.values():
            if network.server is not None:
                await network.server.wait_closed()

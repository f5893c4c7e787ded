"""Link: one persistent TCP connection to a card network with many requests in flight (a MUX).

Layers, one way: `_LinkProtocol` is the wire (framing, coalesced writes, nothing else); `Link` owns
matching, timeouts, sign-on, idle echo and reconnection. Responses are matched by
`match_key` = (MTI pair, terminal id, STAN), e.g. ("040", terminal, STAN) for 0400/0410; a duplicate
key in flight is refused.

A response that arrives after its request timed out is *late*: it is counted and handed to
`late_handler`, because a late approval must reach the reversal path and never be dropped. A response
nobody asked for is *unhandled*: counted and handed to the same handler.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, cast

from switch.common.writes import CoalescedWriter
from switch.iso.framing import Framing, FramingError, framing_for
from switch.iso.mac import AES_KEY_SIZES, MAC_FIELD_PRIMARY, MAC_FIELD_SECONDARY, sign, verify, with_generation
from switch.iso.messages import (
    MTI_NETWORK_REQUEST,
    NETWORK_ECHO,
    NETWORK_SIGN_OFF,
    NETWORK_SIGN_ON,
    IsoError,
    decode,
    encode,
    is_response,
    match_key,
    network_request,
    response_for,
)
from switch.iso.profiles import Profile
from switch.network.config import LinkConfig
from switch.network.metrics import LinkMetrics

logger = logging.getLogger(__name__)

Message = dict[str, Any]
MatchKey = tuple[str, str, str]
LateHandler = Callable[[Message], None]
# Given a key generation, returns that generation's MAC session key (the router asks the vault).
MacKeyProvider = Callable[[int], Awaitable[bytes]]
DEFAULT_LINK_CONFIG = LinkConfig()

STAN_MAX = 999_999


class NetworkError(Exception):
    """Base of every link error. `retryable` says whether the same request may be sent again."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class LinkDownError(NetworkError):
    """No signed-on connection. Retryable when raised before sending; an in-flight request failed by a
    disconnect has an unknown outcome and is raised with retryable=False (it needs a reversal)."""

    retryable = True


class LinkBusyError(NetworkError):
    """The in-flight map is full: shed load, try again shortly or on another link."""

    retryable = True


class LinkTimeoutError(NetworkError):
    """No response in time. The outcome is unknown, so this is not retryable: reverse instead."""

    retryable = False


class MacError(NetworkError):
    """The response carried a bad or missing MAC, so it cannot be trusted. The request may have been
    processed, so this is not retryable: reverse instead."""

    retryable = False


class DuplicateKeyError(NetworkError):
    """A request with the same (MTI pair, terminal, STAN) is already in flight: a caller bug."""

    retryable = False


class _LinkProtocol(asyncio.Protocol):
    """The wire: turns bytes into frames for the link, and coalesces writes to one per loop pass."""

    def __init__(self, link: Link, framing: Framing, loop: asyncio.AbstractEventLoop) -> None:
        self._link = link
        self._reader = framing.reader()
        self._loop = loop
        self._writer: CoalescedWriter | None = None
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so this is a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)
        self._writer = CoalescedWriter(self.transport, self._loop)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except FramingError as error:
            self._link._on_framing_error(error)
            self.abort()
            return
        for frame in frames:
            self._link._on_frame(frame)

    def pause_writing(self) -> None:
        # The kernel buffer is full (the network reads slower than we write): stop taking requests.
        self._link._on_flow(paused=True)

    def resume_writing(self) -> None:
        self._link._on_flow(paused=False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._writer is not None:
            self._writer.discard()
        if not self.closed.done():
            self.closed.set_result(None)
        self._link._on_connection_lost(self)

    def send(self, frame: bytes) -> None:
        if self._writer is not None:
            self._writer.write(frame)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None and self._writer is not None:
            self._writer.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Link:
    """One persistent connection to one network endpoint. Create, `await start()`, then `request()`."""

    def __init__(
        self,
        host: str,
        port: int,
        profile: Profile,
        *,
        late_handler: LateHandler,
        config: LinkConfig = DEFAULT_LINK_CONFIG,
        name: str | None = None,
        metrics: LinkMetrics | None = None,
        on_connect_failed: Callable[[], None] | None = None,
        mac_key_provider: MacKeyProvider | None = None,
    ) -> None:
        if profile.mac and mac_key_provider is None:
            raise ValueError(f"profile {profile.name} MACs its messages: the link needs a mac_key_provider")
        self.host = host
        self.port = port
        self.profile = profile
        self.name = name or f"{profile.name}@{host}:{port}"
        self._late_handler = late_handler
        self.config = config
        self._inflight_max = config.inflight_max
        self._echo_interval_s = config.echo_interval_s
        self._echo_timeout_s = config.echo_timeout_s
        self._connect_timeout_s = config.connect_timeout_s
        self._sign_on_timeout_s = config.sign_on_timeout_s
        self._late_memory_s = config.late_memory_s
        self._late_memory_max = config.late_memory_max
        self._reconnect_delay_initial_s = config.reconnect_delay_initial_s
        self._reconnect_delay_max_s = config.reconnect_delay_max_s
        self._framing = framing_for(profile, config.frame_size_max)
        self._metrics = metrics
        self._on_connect_failed = on_connect_failed
        self._writing_paused = False
        self._mac_key_provider = mac_key_provider
        # The session key of the current connection and its generation, renewed at every sign-on.
        self._mac_key: bytes | None = None
        self._mac_generation = 0

        self._protocol: _LinkProtocol | None = None
        self._pending: dict[MatchKey, tuple[asyncio.Future[Message], asyncio.TimerHandle]] = {}
        # Keys whose requests expired or failed, with the loop time until which a reply counts as late.
        self._late_keys: OrderedDict[MatchKey, float] = OrderedDict()
        self._signed_on = False
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._echo_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._last_rx_time = 0.0
        self._stan = 0

        self.tx = 0
        self.rx = 0
        self.expired = 0
        self.unhandled = 0
        self.late = 0
        self.reconnects = 0
        self.decode_errors = 0
        self.mac_failures = 0

    # Public interface.

    @property
    def ready(self) -> bool:
        """Connected and signed on."""
        return self._signed_on and self._protocol is not None and self._protocol.is_open

    @property
    def paused(self) -> bool:
        """The transport asked us to stop writing (flow control): new requests are refused meanwhile."""
        return self._writing_paused

    @property
    def pending(self) -> int:
        """Requests in flight."""
        return len(self._pending)

    async def start(self, *, reconnect_on_failure: bool = False) -> None:
        """Connect and sign on; raises LinkDownError if that fails. Afterwards the link reconnects itself;
        with `reconnect_on_failure` it also keeps trying after a failed start (close() stops it)."""
        assert self._supervisor is None, "start() called twice"
        try:
            await self._connect()
        except LinkDownError:
            self._connect_failed()
            if reconnect_on_failure:
                self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def request(self, message: Message, timeout_s: float) -> Message:
        """Send `message` and return its matching response.

        Raises LinkDownError, LinkBusyError, DuplicateKeyError, LinkTimeoutError (all NetworkError),
        or IsoError / FramingError if the message itself cannot be encoded.
        """
        protocol = self._protocol
        if not self._signed_on or protocol is None or not protocol.is_open:
            raise LinkDownError(f"link {self.name} is not ready")
        if self._writing_paused:
            raise LinkBusyError(f"link {self.name}: writing paused by flow control")
        return await self._exchange(protocol, message, timeout_s)

    async def close(self) -> None:
        """Sign off (best effort), close the connection and fail whatever is still in flight."""
        if self._closing:
            return
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        protocol = self._protocol
        if protocol is not None and self.ready:
            try:
                await self._exchange(protocol, network_request(NETWORK_SIGN_OFF, self._next_stan()), 1.0)
            except NetworkError:
                pass  # Closing anyway; the network notices the disconnect.
        self._signed_on = False
        self._cancel_echo_timer()
        for task in list(self._background):
            task.cancel()
        if protocol is not None:
            protocol.close()
            await asyncio.wait([protocol.closed], timeout=1.0)
            if not protocol.closed.done():
                protocol.abort()
        self._fail_pending(LinkDownError(f"link {self.name} closed", retryable=False))

    # Matching and timeouts.

    async def _exchange(self, protocol: _LinkProtocol, message: Message, timeout_s: float) -> Message:
        key = match_key(message)
        pending = self._pending
        if key in pending:
            raise DuplicateKeyError(f"link {self.name}: key {key} already in flight")
        if len(pending) >= self._inflight_max:
            raise LinkBusyError(f"link {self.name}: {len(pending)} requests in flight (inflight_max)")
        frame = self._framing.encode_frame(self._encode(message))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        timer = loop.call_later(timeout_s, self._expire, key, future)
        pending[key] = (future, timer)
        protocol.send(frame)
        self.tx += 1
        metrics = self._metrics
        started = 0.0
        if metrics is not None:
            metrics.sent(message.get("t", ""))
            started = loop.time()
        try:
            response = await future
        except asyncio.CancelledError:
            # The caller gave up (its deadline passed): a reply may still come and must be seen as late.
            if self._forget(key, future):
                self._remember_late(key)
            raise
        if metrics is not None:
            metrics.round_trip(loop.time() - started)
        return response

    def _forget(self, key: MatchKey, future: asyncio.Future[Message]) -> bool:
        entry = self._pending.get(key)
        if entry is None or entry[0] is not future:
            return False
        del self._pending[key]
        entry[1].cancel()
        return True

    def _expire(self, key: MatchKey, future: asyncio.Future[Message]) -> None:
        if not self._forget(key, future):
            return
        self.expired += 1
        if self._metrics is not None:
            self._metrics.timeouts.inc()
        self._remember_late(key)
        if not future.done():
            future.set_exception(LinkTimeoutError(f"link {self.name}: no response for {key}"))

    def _remember_late(self, key: MatchKey) -> None:
        late_keys = self._late_keys
        now = asyncio.get_running_loop().time()
        # Drop stale or excess entries from the old end: O(1) amortised, bounded by late_memory_max.
        while late_keys and (len(late_keys) >= self._late_memory_max or next(iter(late_keys.values())) < now):
            late_keys.popitem(last=False)
        late_keys[key] = now + self._late_memory_s
        late_keys.move_to_end(key)

    def _fail_pending(self, error: NetworkError) -> None:
        pending, self._pending = self._pending, {}
        for key, (future, timer) in pending.items():
            timer.cancel()
            self._remember_late(key)
            if not future.done():
                future.set_exception(error)

    # Callbacks from the protocol.

    def _on_frame(self, frame: bytes) -> None:
        try:
            message = decode(self.profile, frame)
        except IsoError as error:
            # The text of IsoError never carries card data, so it is safe to log.
            self.decode_errors += 1
            logger.warning("link %s: undecodable frame dropped: %s", self.name, error)
            return
        self.rx += 1
        self._last_rx_time = asyncio.get_running_loop().time()
        mti = message.get("t", "")
        if self._metrics is not None:
            self._metrics.received(mti, message.get("39"))
        if self.profile.mac and not self._mac_verified(frame, message):
            self._on_mac_failure(message)
            return
        if not is_response(mti):
            self._on_network_request(message)
            return
        key = match_key(message)
        entry = self._pending.pop(key, None)
        if entry is not None:
            future, timer = entry
            timer.cancel()
            if not future.done():
                future.set_result(message)
            return
        deadline = self._late_keys.pop(key, None)
        if deadline is not None and deadline >= self._last_rx_time:
            self.late += 1
            if self._metrics is not None:
                self._metrics.late.inc()
        else:
            self._count_unhandled()
        self._hand_over(message)

    def _on_network_request(self, message: Message) -> None:
        if message["t"] == MTI_NETWORK_REQUEST and self._protocol is not None:
            # The network's own echo or sign-on: acknowledge it on the same connection.
            try:
                frame = self._framing.encode_frame(self._encode(response_for(message, "00")))
            except (IsoError, FramingError) as error:
                logger.warning("link %s: cannot answer network request: %s", self.name, error)
                return
            self._protocol.send(frame)
            self.tx += 1
            return
        self._count_unhandled()
        self._hand_over(message)

    # MAC: signed on the way out, verified on the way in, with the connection's session key.

    def _encode(self, message: Message) -> bytes:
        if not self.profile.mac:
            return encode(self.profile, message)
        assert self._mac_key is not None, "a MAC'd link sends nothing before its session key is set"
        return sign(self.profile, message, self._mac_key)

    def _mac_verified(self, frame: bytes, message: Message) -> bool:
        key = self._mac_key
        if key is None or not verify(self.profile, frame, key):
            return False
        # The MAC is this layer's business: callers see the message as sent, without it.
        message.pop(MAC_FIELD_PRIMARY, None)
        message.pop(MAC_FIELD_SECONDARY, None)
        return True

    def _on_mac_failure(self, message: Message) -> None:
        """A message whose MAC is bad or missing is never acted on: its request fails, anything else is
        dropped (not answered, not handed over)."""
        self.mac_failures += 1
        if self._metrics is not None:
            self._metrics.mac_failures.inc()
        mti = message.get("t", "")
        key = match_key(message)
        logger.warning("link %s: %s %s rejected: bad or missing MAC", self.name, mti, key)
        entry = self._pending.pop(key, None) if is_response(mti) else None
        if entry is None:
            return
        future, timer = entry
        timer.cancel()
        # The genuine answer may still come; it is then late and goes to the reversal path.
        self._remember_late(key)
        if not future.done():
            future.set_exception(MacError(f"link {self.name}: response {key} failed MAC verification"))

    async def _renew_mac_key(self) -> None:
        """A fresh session key for the next sign-on: a new, larger generation, derived by the provider."""
        assert self._mac_key_provider is not None
        generation = max(self._mac_generation + 1, int(time.time()))
        try:
            key = await asyncio.wait_for(self._mac_key_provider(generation), self._connect_timeout_s)
        except Exception as error:  # noqa: BLE001 - any failure means no key; its text is not shown
            raise LinkDownError(f"link {self.name}: no MAC session key ({type(error).__name__})") from None
        if len(key) not in AES_KEY_SIZES:
            raise LinkDownError(f"link {self.name}: MAC session key of {len(key)} bytes is not an AES key")
        self._mac_generation = generation
        self._mac_key = key

    def _count_unhandled(self) -> None:
        self.unhandled += 1
        if self._metrics is not None:
            self._metrics.unhandled.inc()

    def _hand_over(self, message: Message) -> None:
        try:
            self._late_handler(message)
        except Exception as error:
            # Never log the message itself: it may hold a PAN.
            logger.error("link %s: late_handler raised %s", self.name, type(error).__name__)

    def _on_framing_error(self, error: FramingError) -> None:
        logger.warning("link %s: framing error, dropping connection: %s", self.name, error)

    def _on_connection_lost(self, protocol: _LinkProtocol) -> None:
        if protocol is not self._protocol:
            return
        self._signed_on = False
        self._writing_paused = False
        self._cancel_echo_timer()
        # Requests already written have an unknown outcome: not retryable, they need a reversal.
        self._fail_pending(LinkDownError(f"link {self.name} lost its connection", retryable=False))

    # Connection lifecycle.

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        if self.profile.mac:
            await self._renew_mac_key()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(self._new_protocol, self.host, self.port, ssl=self.config.tls,
                                       server_hostname=self.host if self.config.tls else None),
                self._connect_timeout_s
            )
        except (OSError, TimeoutError) as error:
            raise LinkDownError(f"link {self.name}: connect failed: {error}") from None
        self._protocol = protocol
        if not protocol.is_open:
            raise LinkDownError(f"link {self.name}: connection closed during connect")
        sign_on = network_request(NETWORK_SIGN_ON, self._next_stan())
        if self.profile.mac:
            sign_on = with_generation(sign_on, self._mac_generation)
        try:
            response = await self._exchange(protocol, sign_on, self._sign_on_timeout_s)
        except NetworkError as error:
            protocol.abort()
            raise LinkDownError(f"link {self.name}: sign-on failed: {error}") from None
        if response.get("39") != "00":
            protocol.abort()
            raise LinkDownError(f"link {self.name}: sign-on refused, field 39 {response.get('39')!r}")
        self._signed_on = True
        self._last_rx_time = loop.time()
        self._schedule_echo(self._echo_interval_s)

    def _new_protocol(self) -> _LinkProtocol:
        return _LinkProtocol(self, self._framing, asyncio.get_running_loop())

    async def _supervise(self) -> None:
        while not self._closing:
            protocol = self._protocol
            if protocol is not None:
                await asyncio.shield(protocol.closed)
            delay_s = self._reconnect_delay_initial_s
            while not self._closing:
                # Full jitter on the upper half, so a fleet of links does not reconnect in lockstep.
                await asyncio.sleep(delay_s * (0.5 + random.random() / 2))
                try:
                    await self._connect()
                except LinkDownError as error:
                    logger.info("%s; retrying", error)
                    self._connect_failed()
                    delay_s = min(delay_s * 2, self._reconnect_delay_max_s)
                    continue
                self.reconnects += 1
                if self._metrics is not None:
                    self._metrics.reconnects.inc()
                break

    def _connect_failed(self) -> None:
        if self._metrics is not None:
            self._metrics.connect_failures.inc()
        if self._on_connect_failed is not None:
            self._on_connect_failed()

    def _on_flow(self, *, paused: bool) -> None:
        self._writing_paused = paused

    def _next_stan(self) -> str:
        self._stan = self._stan % STAN_MAX + 1
        return f"{self._stan:06d}"

    # Idle echo.

    def _schedule_echo(self, delay_s: float) -> None:
        self._cancel_echo_timer()
        self._echo_timer = asyncio.get_running_loop().call_later(delay_s, self._on_echo_timer)

    def _cancel_echo_timer(self) -> None:
        if self._echo_timer is not None:
            self._echo_timer.cancel()
            self._echo_timer = None

    def _on_echo_timer(self) -> None:
        self._echo_timer = None
        if not self.ready or self._closing:
            return
        loop = asyncio.get_running_loop()
        idle_s = loop.time() - self._last_rx_time
        if idle_s < self._echo_interval_s:
            self._schedule_echo(self._echo_interval_s - idle_s)
            return
        task = loop.create_task(self._echo())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._schedule_echo(self._echo_interval_s)

    async def _echo(self) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        try:
            echo = network_request(NETWORK_ECHO, self._next_stan())
            await self._exchange(protocol, echo, self._echo_timeout_s)
        except LinkTimeoutError:
            logger.warning("link %s: echo unanswered, dropping connection", self.name)
            protocol.abort()
        except NetworkError:
            pass  # Already down or busy; the supervisor or the next echo handles it.

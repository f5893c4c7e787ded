"""Client for the vault process: pipelined requests over persistent Unix-socket connections.

The wire contract (frames, messages, ``VaultError``) is ``switch.vault_protocol``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import cast

import msgspec

from switch.common.cards import CardData, CardError, CardNumber, SecretStr
from switch.common.futures import time_out
from switch.common.outage import Outage
from switch.common.writes import CoalescedWriter
from switch.iso.mac import GENERATION_MAX, SESSION_KEY_BYTES
from switch.vault_protocol import (
    ENCODER,
    FRAMING,
    HELLO_ID,
    RESPONSE_DECODER,
    DetokenizeRequest,
    FrameError,
    Hello,
    MacKeyRequest,
    PingRequest,
    Response,
    TokenInfo,
    TokenizeRequest,
    VaultError,
    VaultUnavailable,
    encode_frame,
)

log = logging.getLogger("switch.vault_client")

# ----- connection ------------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One persistent, pipelined connection: a pending map of request id → future."""

    def __init__(self, on_lost: asyncio.Future[None]) -> None:
        self._decoder = FRAMING.reader()
        self._transport: asyncio.Transport | None = None
        self._writer: CoalescedWriter | None = None
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._ids = itertools.count(HELLO_ID + 1)
        self._on_lost = on_lost
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._writer = CoalescedWriter(self._transport, asyncio.get_running_loop())

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError:
            log.error("vault sent an oversized frame; closing the connection")
            self.abort()
            return
        for body in frames:
            try:
                response = RESPONSE_DECODER.decode(body)
            except msgspec.DecodeError as exc:
                log.error("vault sent an undecodable frame (%s); closing the connection", exc)
                self.abort()
                return
            future = self._pending.pop(response.id, None)
            if future is None:
                log.warning("vault answered unknown request id %d", response.id)
            elif not future.done():
                future.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._writer is not None:
            self._writer.discard()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(VaultUnavailable("connection lost"))
        if not self._on_lost.done():
            self._on_lost.set_result(None)

    @property
    def lost(self) -> asyncio.Future[None]:
        """Resolved when the connection is gone."""
        return self._on_lost

    def send(self, message: msgspec.Struct, request_id: int) -> asyncio.Future[Response]:
        if self.closed or self._writer is None:
            raise VaultUnavailable("connection closed")
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(encode_frame(ENCODER.encode(message)))   # one write for a loop pass's requests
        return future

    def next_id(self) -> int:
        return next(self._ids)

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None and self._writer is not None:
            self._writer.flush()
            self._transport.close()


class VaultClient:
    """Pipelined requests over ``connections`` persistent Unix-socket connections (round-robin)."""

    def __init__(self, socket_path: str, credential: str, connections: int = 4, *,
                 inflight_max: int = 4096, timeout_s: float = 2.0, caller: str = "switch",
                 reconnect_delay_max_s: float = 2.0) -> None:
        assert connections >= 1 and inflight_max >= 1
        self._socket_path = socket_path
        self._credential = credential
        self._caller = caller
        self._inflight_max = inflight_max
        self._timeout_s = timeout_s
        self._reconnect_delay_max_s = reconnect_delay_max_s
        self._slots: list[_Connection | None] = [None] * connections
        self._tasks: list[asyncio.Task[None]] = []
        self._round_robin = itertools.count()
        self._inflight = 0
        self._closing = False
        self.outage = Outage("vault")

    def __repr__(self) -> str:
        live = sum(1 for slot in self._slots if slot is not None and not slot.closed)
        return f"VaultClient(socket={self._socket_path!r}, live={live}/{len(self._slots)})"

    # -- life cycle --

    async def connect(self) -> None:
        """Open every connection (raising if any cannot authenticate), then keep them up in the background."""
        results = await asyncio.gather(*(self._open() for _ in self._slots), return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        for index, result in enumerate(results):
            if isinstance(result, _Connection):
                self._slots[index] = result
        if errors:
            await self.close()
            error = errors[0]
            raise error if isinstance(error, VaultError) else VaultUnavailable(f"connect failed: {error}")
        self._tasks = [asyncio.get_running_loop().create_task(self._keep(index), name=f"vault-conn-{index}")
                       for index in range(len(self._slots))]

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for index, connection in enumerate(self._slots):
            if connection is not None:
                connection.close()
            self._slots[index] = None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()
        _, connection = await loop.create_unix_connection(lambda: _Connection(lost), self._socket_path)
        try:
            future = connection.send(Hello(credential=self._credential, caller=self._caller), HELLO_ID)
            async with asyncio.timeout(self._timeout_s):
                response = await future
        except BaseException:
            connection.abort()
            raise
        if not response.ok:
            connection.abort()
            raise VaultError(response.error or "unauthorized")
        return connection

    async def _keep(self, index: int) -> None:
        """Wait for the slot's connection to drop, then reconnect with exponential backoff."""
        delay_s = 0.05
        while not self._closing:
            connection = self._slots[index]
            if connection is not None:
                await asyncio.shield(connection.lost)
                self._slots[index] = None
                log.warning("vault connection %d lost; reconnecting", index)
            try:
                self._slots[index] = await self._open()
                delay_s = 0.05
            except (OSError, VaultError, TimeoutError) as exc:
                # The outage itself is logged once (switch.common.outage); each attempt only at debug.
                log.debug("vault reconnect %d failed (%s); retry in %.2fs", index, type(exc).__name__, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._reconnect_delay_max_s)

    # -- requests --

    def _pick(self) -> _Connection:
        slots = len(self._slots)
        for _ in range(slots):
            connection = self._slots[next(self._round_robin) % slots]
            if connection is not None and not connection.closed:
                return connection
        raise VaultUnavailable("no live connection")

    async def _call(self, build: type[msgspec.Struct], timeout_s: float | None, **fields: object) -> Response:
        """One request; a VaultUnavailable is reported to the outage log (once per outage)."""
        if self._inflight >= self._inflight_max:
            raise VaultUnavailable("too many requests in flight")
        try:
            connection = self._pick()
            request_id = connection.next_id()
            future = connection.send(build(id=request_id, **fields), request_id)
        except VaultUnavailable as error:
            self.outage.failed(error)
            raise
        self._inflight += 1
        timer = None
        try:
            # A timer handle on the answer's future: asyncio.timeout's context manager cost 4.6 µs a payment.
            timer = asyncio.get_running_loop().call_later(self._timeout_s if timeout_s is None else timeout_s,
                                                          time_out, future)
            response = await future
        except TimeoutError:
            late = VaultUnavailable("no answer in time")
            self.outage.failed(late)
            raise late from None
        except VaultUnavailable as lost:                # the connection was lost with the request on it
            self.outage.failed(lost)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._inflight -= 1
            connection.forget(request_id)
        if self.outage.down:
            self.outage.succeeded()
        return response

    async def ping(self, timeout_s: float | None = None) -> bool:
        try:
            response = await self._call(PingRequest, timeout_s)
        except VaultError:
            return False
        return response.ok

    async def tokenize(self, merchant_id: str, number: CardNumber, exp_month: int, exp_year: int,
                       cvc: SecretStr | None = None, *, timeout_s: float | None = None) -> TokenInfo:
        response = await self._call(
            TokenizeRequest, timeout_s, merchant_id=merchant_id, number=number.reveal(), exp_month=exp_month,
            exp_year=exp_year, cvc=None if cvc is None else cvc.reveal())
        if not response.ok:
            raise VaultError(response.error or "unavailable")
        return TokenInfo(token=response.token or "", brand=response.brand or "", bin=response.bin or "",
                         last4=response.last4 or "", exp_month=response.exp_month or 0,
                         exp_year=response.exp_year or 0, fingerprint_hex=response.fingerprint or "")

    async def detokenize(self, merchant_id: str, token: str, *, timeout_s: float | None = None) -> CardData:
        response = await self._call(DetokenizeRequest, timeout_s, merchant_id=merchant_id, token=token)
        if not response.ok:
            raise VaultError(response.error or "unavailable")
        try:
            number = CardNumber(response.number or "")
        except CardError:
            raise VaultError("decrypt_failed", "vault returned an invalid card number") from None
        return CardData(number=number, exp_month=response.exp_month or 0, exp_year=response.exp_year or 0,
                        brand=response.brand or "", last4=response.last4 or "",
                        cvc=None if response.cvc is None else SecretStr(response.cvc))

    async def mac_key(self, network: str, generation: int, *, timeout_s: float | None = None) -> bytes:
        """The MAC session key of (network, generation), derived by the vault inside its HSM."""
        if not 0 < generation <= GENERATION_MAX:
            raise VaultError("invalid_request", "key generation out of range")
        response = await self._call(MacKeyRequest, timeout_s, network=network, generation=generation)
        if not response.ok:
            raise VaultError(response.error or "unavailable")
        if response.key is None or len(response.key) != SESSION_KEY_BYTES:
            raise VaultError("unavailable", "vault returned a malformed MAC key")
        return response.key

"""The vault core: tokenize, detokenize, key rotation and re-encryption over the ``vault`` schema.

Envelope encryption: data-encryption keys (DEKs, 32 random bytes) are wrapped by a KEK inside the HSM and
stored wrapped in Postgres; they are unwrapped once (at start, or when a new version appears) into memory.
PANs are then encrypted in software with AES-GCM (random 12-byte nonce, token id as associated data), so the
HSM (~90 us a call) stays off the per-card path. Card fingerprints are HMAC-SHA256 under a fingerprint key
that is itself wrapped by the KEK. The CVC is never written anywhere: it waits in a bounded in-memory map
with a short TTL and is handed out once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switch.common.batch import Batcher, BatchQueueFull
from switch.common.cards import CardData, CardError, CardNumber, SecretStr, validate_cvc, validate_expiry
from switch.common.ids import new_id
from switch.vault_protocol import MERCHANT_ID_LENGTH_MAX, VaultError
from vault.hsm import Hsm, HsmError
from vault.keks import FINGERPRINT_AAD, active_kek, dek_aad, ensure_active_kek, hsm_call

log = logging.getLogger("vault.service")

DEK_BYTES = 32
FINGERPRINT_KEY_BYTES = 32
NONCE_BYTES = 12
TOKEN_PREFIX = "tok_"  # noqa: S105 - a public id prefix, not a secret
TOKEN_ID_LENGTH_MAX = 64
CVC_TTL_S = 600.0
CVC_ENTRIES_MAX = 100_000
AUDIT_ROWS_MAX = 100_000
AUDIT_BATCH_ROWS_MAX = 5_000
AUDIT_FLUSH_INTERVAL_S = 0.05
REENCRYPT_BATCH_ROWS_DEFAULT = 500
REENCRYPT_IDLE_ROUNDS_MAX = 200
KEYS_CHANNEL = "vault_keys"
TOKENIZE_QUEUE_MAX = 10_000
STORE_ATTEMPTS_MAX = 3
# A start whose statement Postgres cancelled at a timeout (rotate-kek or rewrap-keys --destroy-retired holds
# vault.keks across HSM calls) tries again, for this long, rather than exiting.
START_WAIT_S = 60.0
START_RETRY_S = 0.5

T = TypeVar("T")


def refused_by_postgres(error: BaseException) -> bool:
    """Postgres ran the statement and refused a row of it (a value it cannot store or compare, say): a
    batch that failed this way is split, so one caller's bad input never fails the others' lookups."""
    return isinstance(error, asyncpg.PostgresError) and not isinstance(error, (
        asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.InsufficientResourcesError))


def new_token_id() -> str:
    """``tok_`` + 22 base62 characters (switch.common.ids: 131 random bits)."""
    return new_id(TOKEN_PREFIX.rstrip("_"))


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token: str
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: bytes
    created: bool

    def __repr__(self) -> str:
        return (f"TokenRecord(token={self.token!r}, brand={self.brand!r}, bin={self.bin!r}, "
                f"last4={self.last4!r})")


@dataclass(frozen=True, slots=True)
class _CardWrite:
    """One tokenize's row, waiting for its batch. Holds no PAN: the number is already ciphertext."""

    token_id: str
    merchant_id: str
    fingerprint: bytes
    key_version: int
    nonce: bytes
    ciphertext: bytes
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int

    def __repr__(self) -> str:
        return f"_CardWrite(token_id={self.token_id!r})"


@dataclass(frozen=True, slots=True)
class _StoredCard:
    token: str
    brand: str
    bin: str
    last4: str


def _columns(writes: list[_CardWrite]) -> list[list[Any]]:
    """The statement's eleven arrays, in _SQL_STORE_CARDS' parameter order."""
    return [[write.token_id for write in writes], [write.merchant_id for write in writes],
            [write.fingerprint for write in writes], [write.key_version for write in writes],
            [write.nonce for write in writes], [write.ciphertext for write in writes],
            [write.brand for write in writes], [write.bin for write in writes],
            [write.last4 for write in writes], [write.exp_month for write in writes],
            [write.exp_year for write in writes]]


@dataclass(frozen=True, slots=True)
class ReencryptResult:
    rows_moved: int
    rows_undecryptable: int
    active_version: int


# ----- keys in memory --------------------------------------------------------------------------------


class KeyRing:
    """Unwrapped DEKs by version plus the fingerprint key. Its repr shows versions only."""

    def __init__(self, fingerprint_key: bytes) -> None:
        self._fingerprint_key = fingerprint_key
        self._ciphers: dict[int, AESGCM] = {}
        self.active_version = 0

    def add(self, version: int, key: bytes) -> None:
        self._ciphers[version] = AESGCM(key)

    def has(self, version: int) -> bool:
        return version in self._ciphers

    @property
    def versions(self) -> list[int]:
        return sorted(self._ciphers)

    def fingerprint(self, pan: str) -> bytes:
        return hmac.digest(self._fingerprint_key, pan.encode("ascii"), "sha256")

    def encrypt(self, token_id: str, pan: str, version: int | None = None) -> tuple[int, bytes, bytes]:
        version = self.active_version if version is None else version
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = self._ciphers[version].encrypt(nonce, pan.encode("ascii"), token_id.encode("ascii"))
        return version, nonce, ciphertext

    def decrypt(self, token_id: str, version: int, nonce: bytes, ciphertext: bytes) -> str:
        cipher = self._ciphers.get(version)
        if cipher is None:
            raise VaultError("decrypt_failed", f"no key version {version}")
        try:
            return cipher.decrypt(nonce, ciphertext, token_id.encode("ascii")).decode("ascii")
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise VaultError("decrypt_failed") from None

    def __repr__(self) -> str:
        return f"KeyRing(versions={self.versions}, active={self.active_version})"


# ----- CVC: memory only --------------------------------------------------------------------------------


class CvcCache:
    """Bounded token → CVC map with a TTL; entries are handed out once. Oldest entries are evicted first."""

    def __init__(self, ttl_s: float = CVC_TTL_S, entries_max: int = CVC_ENTRIES_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._entries_max = entries_max
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, SecretStr]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, token_id: str, cvc: SecretStr) -> None:
        now = self._clock()
        self._entries.pop(token_id, None)
        self._entries[token_id] = (now + self._ttl_s, cvc)
        # Insertion order is expiry order (one TTL), so expired and excess entries sit at the front.
        while self._entries:
            oldest_expiry, _ = next(iter(self._entries.values()))
            if len(self._entries) <= self._entries_max and oldest_expiry > now:
                break
            self._entries.popitem(last=False)

    def take(self, token_id: str) -> SecretStr | None:
        entry = self._entries.pop(token_id, None)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def __repr__(self) -> str:
        return f"CvcCache(entries={len(self._entries)})"


# ----- audit: batched, fail closed -------------------------------------------------------------------


AUDIT_COLUMNS = ("at", "caller", "operation", "token_id", "merchant_id", "outcome")
AuditRow = tuple[datetime, str, str, str | None, str | None, str]


class AuditLog:
    """Buffers audit rows and writes them in batches (COPY), so 5,000 detokenizes/s cost a few inserts.

    The buffer is bounded; when Postgres cannot keep up and it fills, ``record`` refuses, and the vault
    refuses the detokenize (no audit row, no PAN). A crash can lose at most one flush interval of rows.
    """

    def __init__(self, pool: asyncpg.Pool, rows_max: int = AUDIT_ROWS_MAX,
                 batch_rows_max: int = AUDIT_BATCH_ROWS_MAX,
                 interval_s: float = AUDIT_FLUSH_INTERVAL_S) -> None:
        self._pool = pool
        self._rows_max = rows_max
        self._batch_rows_max = batch_rows_max
        self._interval_s = interval_s
        self._rows: list[AuditRow] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.rows_written = 0
        self.flush_failures = 0

    @property
    def full(self) -> bool:
        return len(self._rows) >= self._rows_max

    @property
    def pending(self) -> int:
        return len(self._rows)

    def record(self, caller: str, operation: str, token_id: str | None, merchant_id: str | None,
               outcome: str) -> None:
        if self.full:
            raise VaultError("unavailable", "audit buffer full")
        self._rows.append((datetime.now(UTC), _storable(caller) or "", operation, _storable(token_id),
                           _storable(merchant_id), outcome))
        if len(self._rows) >= self._batch_rows_max:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vault-audit")

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._flush_lock:
            while self._rows:
                batch = self._rows[: self._batch_rows_max]
                del self._rows[: len(batch)]
                try:
                    async with self._pool.acquire() as connection:
                        await connection.copy_records_to_table(
                            "audit", schema_name="vault", columns=AUDIT_COLUMNS, records=batch)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    self.flush_failures += 1
                    self._rows[:0] = batch
                    log.warning("audit flush failed (%s); %d rows pending",
                                type(exc).__name__, len(self._rows))
                    return
                self.rows_written += len(batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()


# ----- the vault -------------------------------------------------------------------------------------


# Tokenize writes of concurrent requests go to Postgres as one statement (see switch/common/batch.py). A
# card its merchant already stored is read, not rewritten: `existing` is a plain read, and the row is
# updated only when the expiry changed, so a card paid with again and again takes no row lock and leaves no
# dead tuple. New cards are inserted with ON CONFLICT DO NOTHING; a card a concurrent statement inserted
# after this one's snapshot is in neither `existing` nor `inserted`, and the caller asks again for it.
# Callers send each (merchant_id, fingerprint) once per statement.
_SQL_STORE_CARDS = """
WITH q AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::bytea[], $6::bytea[],
                         $7::text[], $8::text[], $9::text[], $10::int2[], $11::int2[]) WITH ORDINALITY
        AS q(id, merchant_id, fingerprint, key_version, nonce, ciphertext, brand, bin, last4, exp_month,
             exp_year, position)
), existing AS MATERIALIZED (
    SELECT q.position, t.id, t.brand, t.bin, t.last4, t.exp_month, t.exp_year
    FROM q CROSS JOIN LATERAL (
        SELECT id, brand, bin, last4, exp_month, exp_year FROM vault.tokens
        WHERE merchant_id = q.merchant_id AND fingerprint = q.fingerprint LIMIT 1) t
), inserted AS (
    INSERT INTO vault.tokens (id, merchant_id, fingerprint, key_version, nonce, ciphertext, brand, bin,
                              last4, exp_month, exp_year)
    SELECT q.id, q.merchant_id, q.fingerprint, q.key_version, q.nonce, q.ciphertext, q.brand, q.bin,
           q.last4, q.exp_month, q.exp_year
    FROM q WHERE NOT EXISTS (SELECT FROM existing e WHERE e.position = q.position)
    ORDER BY q.merchant_id, q.fingerprint
    ON CONFLICT (merchant_id, fingerprint) DO NOTHING
    RETURNING id, brand, bin, last4
), changed AS MATERIALIZED (
    SELECT e.id, q.exp_month, q.exp_year FROM existing e JOIN q ON q.position = e.position
    WHERE (e.exp_month, e.exp_year) <> (q.exp_month, q.exp_year)
), updated AS (
    UPDATE vault.tokens t SET (exp_month, exp_year) = (SELECT c.exp_month, c.exp_year FROM changed c WHERE c.id = t.id)
    WHERE t.id = ANY (ARRAY (SELECT id FROM changed))
)
SELECT q.position, coalesce(e.id, i.id) AS id, coalesce(e.brand, i.brand) AS brand,
       coalesce(e.bin, i.bin) AS bin, coalesce(e.last4, i.last4) AS last4
FROM q LEFT JOIN existing e ON e.position = q.position LEFT JOIN inserted i ON i.id = q.id
WHERE e.id IS NOT NULL OR i.id IS NOT NULL
"""

# The same for a lone card (a batch of one, the usual case when the vault is not busy). Postgres plans the
# array statement again on every execution while its batches are small (custom plans): a lone new card took
# 1,000-1,080 us against 470-510 us with this one (and 410-550 us with the old upsert).
_SQL_STORE_CARD = """
WITH existing AS MATERIALIZED (
    SELECT id, brand, bin, last4, exp_month, exp_year FROM vault.tokens
    WHERE merchant_id = $2::text AND fingerprint = $3::bytea
), inserted AS (
    INSERT INTO vault.tokens (id, merchant_id, fingerprint, key_version, nonce, ciphertext, brand, bin,
                              last4, exp_month, exp_year)
    SELECT $1::text, $2::text, $3::bytea, $4::int, $5::bytea, $6::bytea, $7::text, $8::text, $9::text,
           $10::int2, $11::int2
    WHERE NOT EXISTS (SELECT FROM existing)
    ON CONFLICT (merchant_id, fingerprint) DO NOTHING
    RETURNING id, brand, bin, last4
), updated AS (
    UPDATE vault.tokens SET exp_month = $10::int2, exp_year = $11::int2
    WHERE id = (SELECT id FROM existing WHERE (exp_month, exp_year) <> ($10::int2, $11::int2))
)
SELECT 1::bigint AS position, id, brand, bin, last4 FROM existing
UNION ALL
SELECT 1::bigint, id, brand, bin, last4 FROM inserted
"""

# Card lookups of concurrent detokenize calls go to Postgres as one statement (see switch/batch.py). Each
# card is looked up by its own key (LATERAL ... LIMIT 1, which the planner cannot turn into a join over the
# whole table; by the token alone, so the primary key is the index), as is each card `existing` looks for
# above, and an expiry changed is written by key: see vault.server.SESSION_SETTINGS.
_SQL_SELECT_CARDS = """
SELECT q.position, t.key_version, t.nonce, t.ciphertext, t.brand, t.last4, t.exp_month, t.exp_year
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(id, merchant_id, position)
CROSS JOIN LATERAL (
    SELECT merchant_id, key_version, nonce, ciphertext, brand, last4, exp_month, exp_year FROM vault.tokens
    WHERE id = q.id LIMIT 1) t
WHERE t.merchant_id = q.merchant_id
"""

_SQL_SELECT_STALE = """
SELECT id, key_version, nonce, ciphertext FROM vault.tokens
WHERE key_version <> $1 AND NOT (id = ANY($3::text[]))
LIMIT $2 FOR UPDATE SKIP LOCKED
"""

# Each row by its key (= ANY of the ids), as the token statements above: not a join the planner could
# spread over the whole table with the plan it made while the table was small.
_SQL_UPDATE_REENCRYPTED = """
UPDATE vault.tokens AS t SET key_version = $1, (nonce, ciphertext) = (
    SELECT u.nonce, u.ciphertext FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS u(id, nonce, ciphertext)
    WHERE u.id = t.id)
WHERE t.id = ANY ($2::text[])
"""


class Vault:
    """Card vault over an asyncpg pool (vault_app role) and an open HSM session."""

    def __init__(self, pool: asyncpg.Pool, hsm: Hsm, kek_label: str, *,
                 cvc_cache: CvcCache | None = None, audit: AuditLog | None = None) -> None:
        self._pool = pool
        self._hsm = hsm
        self._kek_label = kek_label
        self._keys: KeyRing | None = None
        self._keys_lock = asyncio.Lock()
        self._cvc = cvc_cache or CvcCache()
        self.audit = audit or AuditLog(pool)
        # One statement in flight per path: the cards that arrive while it runs go together in the next, twice
        # as many a statement as with two in flight. At the bench's mix that took 6 µs of the vault's CPU and
        # 6 of Postgres's off each payment, and the switch, answered in larger bunches, batched more too.
        self._card_lookups: Batcher[tuple[str, str], asyncpg.Record | None] = Batcher(
            self._select_cards, size_max=256, inflight_max=1, splittable=refused_by_postgres)
        self._card_writes: Batcher[_CardWrite, _StoredCard] = Batcher(
            self._store_cards, size_max=256, inflight_max=1, queue_max=TOKENIZE_QUEUE_MAX,
            splittable=refused_by_postgres)
        self.store_retries = 0
        self._listener: Any = None
        self._background: set[asyncio.Task[None]] = set()

    # -- life cycle --

    async def start(self, *, listen_dsn: str | None = None) -> None:
        """Make sure the KEK, fingerprint key and a DEK exist, unwrap them once, listen for rotations.

        ``listen_dsn``: a dedicated connection LISTENs for key rotations done by other processes.
        """
        await self._prepare_keys()
        self.audit.start()
        if listen_dsn:
            self._listener = await asyncpg.connect(listen_dsn)
            await self._listener.add_listener(KEYS_CHANNEL, self._on_keys_changed)

    async def _prepare_keys(self) -> None:
        """The keys' set-up, each step idempotent: retried while a statement is cancelled at the pool's
        statement timeout or a lock timeout (a key tool holding vault.keks), for START_WAIT_S."""
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                self._kek_label = await ensure_active_kek(self._pool, self._hsm, self._kek_label)
                self._keys = KeyRing(await self._load_fingerprint_key())
                await self._ensure_first_dek()
                await self.refresh_keys()
                return
            except (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError) as error:
                if time.monotonic() >= deadline:
                    raise
                log.warning("vault start: a key set-up statement was cancelled (%s; a key tool holding "
                            "vault.keks?); trying again", type(error).__name__)
                await asyncio.sleep(START_RETRY_S)

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        await self.audit.close()

    @property
    def keys(self) -> KeyRing:
        assert self._keys is not None, "Vault.start() not called"
        return self._keys

    async def _load_fingerprint_key(self) -> bytes:
        row = await self._pool.fetchrow("SELECT wrapped_key, nonce, kek_label FROM vault.fingerprint_key")
        if row is None:
            nonce, wrapped = await hsm_call(
                self._hsm.wrap, self._kek_label, secrets.token_bytes(FINGERPRINT_KEY_BYTES), FINGERPRINT_AAD)
            await self._pool.execute(
                "INSERT INTO vault.fingerprint_key (id, wrapped_key, nonce, kek_label) VALUES (1, $1, $2, $3)"
                " ON CONFLICT DO NOTHING", wrapped, nonce, self._kek_label)
            row = await self._pool.fetchrow("SELECT wrapped_key, nonce, kek_label FROM vault.fingerprint_key")
        return await hsm_call(self._hsm.unwrap, row["kek_label"], row["nonce"], row["wrapped_key"],
                                    FINGERPRINT_AAD)

    async def _ensure_first_dek(self) -> None:
        if await self._pool.fetchval("SELECT count(*) FROM vault.data_keys") == 0:
            nonce, wrapped = await hsm_call(
                self._hsm.wrap, self._kek_label, secrets.token_bytes(DEK_BYTES), dek_aad(1))
            # Two vaults starting at once: the loser's key is discarded and it loads the winner's.
            await self._pool.execute(
                "INSERT INTO vault.data_keys (version, wrapped_key, nonce, kek_label, state)"
                " VALUES (1, $1, $2, $3, 'active') ON CONFLICT DO NOTHING", wrapped, nonce, self._kek_label)

    async def refresh_keys(self) -> None:
        """Unwrap DEK versions not yet in memory (HSM calls only for new ones); pick the active one."""
        async with self._keys_lock:
            rows = await self._pool.fetch(
                "SELECT version, wrapped_key, nonce, kek_label, state FROM vault.data_keys ORDER BY version")
            for row in rows:
                if not self.keys.has(row["version"]):
                    key = await hsm_call(self._hsm.unwrap, row["kek_label"], row["nonce"],
                                               row["wrapped_key"], dek_aad(row["version"]))
                    self.keys.add(row["version"], key)
                if row["state"] == "active":
                    self.keys.active_version = row["version"]
        log.info("data keys loaded: versions=%s active=%d", self.keys.versions, self.keys.active_version)

    def _on_keys_changed(self, *_args: object) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh_logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh_keys()
        except (HsmError, asyncpg.PostgresError, OSError) as exc:
            log.error("data key refresh failed: %s", exc)

    # -- card operations --

    async def tokenize(self, merchant_id: str, number: CardNumber, exp_month: int, exp_year: int,
                       cvc: SecretStr | None, caller: str = "unknown") -> TokenRecord:
        """Store the card for this merchant (or find it again) and return its token."""
        _check_merchant(merchant_id)
        try:
            brand = number.require_brand()
            validate_expiry(exp_month, exp_year)
            if cvc is not None:
                validate_cvc(cvc, brand)
        except CardError as exc:
            raise VaultError(exc.code) from None
        pan = number.reveal()
        keys = self.keys
        fingerprint = keys.fingerprint(pan)
        token_id = new_token_id()
        version, nonce, ciphertext = keys.encrypt(token_id, pan)
        try:
            stored = await self._card_writes.submit(_CardWrite(
                token_id, merchant_id, fingerprint, version, nonce, ciphertext, brand, number.bin,
                number.last4, exp_month, exp_year))
        except BatchQueueFull:
            raise VaultError("unavailable", "too many tokenizes waiting") from None
        created = stored.token == token_id
        if cvc is not None:
            self._cvc.put(stored.token, cvc)
        self.audit.record(caller, "tokenize", stored.token, merchant_id, "created" if created else "existing")
        return TokenRecord(token=stored.token, brand=stored.brand, bin=stored.bin, last4=stored.last4,
                           exp_month=exp_month, exp_year=exp_year, fingerprint=fingerprint, created=created)

    async def _store_cards(self, writes: list[_CardWrite]) -> list[_StoredCard | BaseException]:
        """Store or find each card, one statement for the lot; each (merchant, fingerprint) is sent once,
        with the last of its writes (the expiry the row ends with, as if they had come one after another)."""
        last: dict[tuple[str, bytes], _CardWrite] = {}
        for write in writes:
            last[(write.merchant_id, write.fingerprint)] = write
        found: dict[tuple[str, bytes], _StoredCard] = {}
        pending = list(last.values())
        for _ in range(STORE_ATTEMPTS_MAX):
            if len(pending) == 1:
                write = pending[0]
                rows = await self._pool.fetch(
                    _SQL_STORE_CARD, write.token_id, write.merchant_id, write.fingerprint, write.key_version,
                    write.nonce, write.ciphertext, write.brand, write.bin, write.last4, write.exp_month,
                    write.exp_year)
            else:
                rows = await self._pool.fetch(_SQL_STORE_CARDS, *_columns(pending))
            for row in rows:
                write = pending[row["position"] - 1]
                found[(write.merchant_id, write.fingerprint)] = _StoredCard(
                    row["id"], row["brand"], row["bin"], row["last4"])
            # Missing: inserted by a concurrent statement after this one's snapshot; the next one sees it.
            pending = [write for write in pending if (write.merchant_id, write.fingerprint) not in found]
            if not pending:
                break
            self.store_retries += 1
        missing = VaultError("unavailable", "card neither stored nor found")
        return [found.get((write.merchant_id, write.fingerprint), missing) for write in writes]

    async def detokenize(self, merchant_id: str, token_id: str, caller: str) -> CardData:
        """The card behind a token of this merchant; another merchant's token is ``not_found``."""
        if self.audit.full:
            # Fail closed: a PAN is never handed out without its audit row.
            raise VaultError("unavailable", "audit buffer full")
        if (not isinstance(token_id, str) or not token_id.startswith(TOKEN_PREFIX)
                or len(token_id) > TOKEN_ID_LENGTH_MAX or not token_id.isascii() or not token_id.isprintable()):
            self.audit.record(caller, "detokenize", None, merchant_id, "not_found")
            raise VaultError("not_found")
        try:
            row = await self._card_lookups.submit((token_id, merchant_id))
        except BatchQueueFull:
            raise VaultError("unavailable", "too many lookups waiting") from None
        if row is None:
            self.audit.record(caller, "detokenize", token_id, merchant_id, "not_found")
            raise VaultError("not_found")
        try:
            pan = await self._decrypt(token_id, row["key_version"], row["nonce"], row["ciphertext"])
            number = CardNumber(pan)
        except (VaultError, CardError):
            self.audit.record(caller, "detokenize", token_id, merchant_id, "decrypt_failed")
            log.error("decrypt failed for token %s (key version %d)", token_id, row["key_version"])
            raise VaultError("decrypt_failed") from None
        self.audit.record(caller, "detokenize", token_id, merchant_id, "ok")
        return CardData(number=number, exp_month=row["exp_month"], exp_year=row["exp_year"],
                        brand=row["brand"], last4=row["last4"], cvc=self._cvc.take(token_id))

    async def _select_cards(self, keys: list[tuple[str, str]]) -> list[asyncpg.Record | None]:
        rows = await self._pool.fetch(_SQL_SELECT_CARDS, [token for token, _ in keys],
                                      [merchant for _, merchant in keys])
        found = {row["position"]: row for row in rows}
        return [found.get(position) for position in range(1, len(keys) + 1)]

    async def _decrypt(self, token_id: str, version: int, nonce: bytes, ciphertext: bytes) -> str:
        if not self.keys.has(version):
            # A version rotated in by another process whose notification has not arrived yet.
            await self.refresh_keys()
        return self.keys.decrypt(token_id, version, nonce, ciphertext)

    def batch_counts(self) -> dict[str, tuple[int, int]]:
        """(statements, items) sent by each group-committed card path so far: tokenize, detokenize."""
        return {"tokenize": (self._card_writes.batches, self._card_writes.items),
                "detokenize": (self._card_lookups.batches, self._card_lookups.items)}

    # -- key rotation --

    async def rotate(self) -> int:
        """Create a new active DEK version; the previous ones are retired (they still decrypt)."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("LOCK TABLE vault.data_keys IN EXCLUSIVE MODE")
            version = (await connection.fetchval("SELECT coalesce(max(version), 0) FROM vault.data_keys")) + 1
            key = secrets.token_bytes(DEK_BYTES)
            # The active KEK may have been rotated by another process since this vault started.
            self._kek_label = await active_kek(connection) or self._kek_label
            nonce, wrapped = await hsm_call(self._hsm.wrap, self._kek_label, key, dek_aad(version))
            await connection.execute("UPDATE vault.data_keys SET state = 'retired' WHERE state = 'active'")
            await connection.execute(
                "INSERT INTO vault.data_keys (version, wrapped_key, nonce, kek_label, state)"
                " VALUES ($1, $2, $3, $4, 'active')", version, wrapped, nonce, self._kek_label)
            await connection.execute(f"NOTIFY {KEYS_CHANNEL}")
        async with self._keys_lock:
            self.keys.add(version, key)
            self.keys.active_version = version
        log.info("rotated to data key version %d", version)
        return version

    async def reencrypt_batch(self, batch_rows: int = REENCRYPT_BATCH_ROWS_DEFAULT,
                              exclude_ids: Sequence[str] = ()) -> tuple[int, list[str]]:
        """Move up to ``batch_rows`` ciphertexts to the active version in one transaction.

        Rows are locked (FOR UPDATE SKIP LOCKED), so a concurrent tokenize of the same card waits or is
        skipped, and detokenize keeps reading either the old or the new row: both versions decrypt.
        Returns (rows moved, ids of rows that failed to decrypt and were left as they are).
        """
        keys = self.keys
        active = keys.active_version
        undecryptable: list[str] = []
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(_SQL_SELECT_STALE, active, batch_rows, list(exclude_ids))
            ids, nonces, ciphertexts = [], [], []
            for row in rows:
                try:
                    pan = await self._decrypt(row["id"], row["key_version"], row["nonce"], row["ciphertext"])
                except VaultError:
                    log.error("re-encryption skipped token %s: decrypt failed", row["id"])
                    undecryptable.append(row["id"])
                    continue
                _, nonce, ciphertext = keys.encrypt(row["id"], pan, active)
                ids.append(row["id"])
                nonces.append(nonce)
                ciphertexts.append(ciphertext)
            if ids:
                await connection.execute(_SQL_UPDATE_REENCRYPTED, active, ids, nonces, ciphertexts)
        return len(ids), undecryptable

    async def reencrypt(self, batch_rows: int = REENCRYPT_BATCH_ROWS_DEFAULT) -> ReencryptResult:
        """Re-encrypt every ciphertext under an old version, batch by batch."""
        await self.refresh_keys()
        moved = 0
        undecryptable: list[str] = []
        idle_rounds = 0
        while True:
            count, failed = await self.reencrypt_batch(batch_rows, undecryptable)
            moved += count
            undecryptable += failed
            if count or failed:
                idle_rounds = 0
                continue
            remaining = await self._pool.fetchval(
                "SELECT count(*) FROM vault.tokens WHERE key_version <> $1 AND NOT (id = ANY($2::text[]))",
                self.keys.active_version, undecryptable)
            if remaining == 0:
                return ReencryptResult(moved, len(undecryptable), self.keys.active_version)
            # Rows locked by concurrent writers were skipped; wait for their transactions to end.
            idle_rounds += 1
            if idle_rounds > REENCRYPT_IDLE_ROUNDS_MAX:
                raise VaultError("unavailable", f"{remaining} rows stayed locked")
            await asyncio.sleep(0.05)

    def __repr__(self) -> str:
        return f"Vault(keys={self._keys!r}, cvc={self._cvc!r})"


def _check_merchant(merchant_id: str) -> None:
    if (not isinstance(merchant_id, str) or not 0 < len(merchant_id) <= MERCHANT_ID_LENGTH_MAX
            or not merchant_id.isprintable()):
        raise VaultError("invalid_request", "merchant_id must be 1 to 64 printable characters")


def _storable(text: str | None) -> str | None:
    """Text for an audit row as given, except what Postgres cannot store or a reader should not see raw
    (NUL, control characters), which is escaped: one bad row must never stall the audit log, because a
    stalled audit log fails every detokenize closed."""
    if text is None or text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


async def run_with_vault(pool: asyncpg.Pool, hsm: Hsm, kek_label: str,
                         body: Callable[[Vault], Awaitable[T]]) -> T:
    """Start a vault, run ``body`` with it, close it (used by the CLI's one-shot commands)."""
    vault = Vault(pool, hsm, kek_label)
    await vault.start()
    try:
        return await body(vault)
    finally:
        await vault.close()

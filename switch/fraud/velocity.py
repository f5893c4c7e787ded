"""Velocity counters in Redis: attempts, US-dollar amounts, declines and small authorizations per card,
address, email and merchant over sliding windows of 1 minute, 1 hour and 24 hours, the distinct cards an
address used in the last hour, and the merchant's card-testing cool-off.

One Lua script per payment updates and reads every counter of its subjects at once; it goes out on the
worker's Redis pipeline with concurrent requests' commands (switch.idempotency.pipeline). A decline adds
to the same counters by a command that nothing waits for. Keys are keyed hashes (HMAC-SHA256 under the
switch's key, keyed BLAKE2b): no fingerprint, address or email is ever a Redis key, and the card's counters are
switch-wide (a stolen card is tried at many merchants) while the address's and email's are per merchant.
Every key expires 25 hours after its last use; an address's distinct-card set (a sorted set: card -> when
last used) holds at most 64 cards.

Each subject is one 224-byte string: per window the current and the previous fixed window's four sums,
and the merchant's cool-off deadline. A window's count is the sliding estimate Cloudflare's rate limiter
uses: the previous window's sum weighted by how much of it the sliding window still covers, plus the
current one's. It is exact for counts that stay more than two windows apart or fall in the current one.
The clock is the switch's (ARGV), so tests can move it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.exceptions import RedisError

from switch.idempotency.lock import Rider
from switch.idempotency.pipeline import RedisPipeliner
from switch.idempotency.ratelimit import lock_script_with
from switch.idempotency.resp import Packed, packed

DISTINCT_MAX = 64
MERCHANT_KEYS_MAX = 10_000
_CARD_MERCHANT = ("card", "merchant")

# velocity(first, a): KEYS[first] is the address's distinct-card set (or "" without an address),
# KEYS[first + 1..] the subjects' counters, the merchant's last. ARGV[a..a + 3]: now (ms), mode ('a' an
# attempt, 's' a small one, 'd' a decline), US cents, the card's member name in the distinct set (sent
# only with one). The card-testing thresholds are formatted in (CardTesting). Answers {testing (0/1),
# testing_started (0/1), distinct cards, then per subject but the merchant the 6 sums rules read (READS),
# then the merchant's 3}: only what is read, as the switch parses every number of the answer (12 numbers
# for a card and a merchant, where all 12 sums of each were 27). It runs alone, or inside the idempotency
# lock's command for a payment whose card is known before the vault answers (Velocity.rider).
VELOCITY = """
local function velocity(first, a)
  local floor, pack, unpack_struct = math.floor, struct.pack, struct.unpack
  local widths = {60000, 3600000, 86400000}
  local layout = '<' .. string.rep('l', 28)
  local now = tonumber(ARGV[a])
  local attempt = ARGV[a + 1] ~= 'd'
  local a1, a2, a3, a4 = 0, 0, 1, 0
  if attempt then a1, a2, a3, a4 = 1, tonumber(ARGV[a + 2]), 0, (ARGV[a + 1] == 's' and 1 or 0) end
  local answer, n = {0, 0, 0}, 3
  local v
  local sums = {}
  for k = first + 1, #KEYS do
    local raw = redis.call('GET', KEYS[k])
    if raw and #raw == 224 then
      v = {unpack_struct(layout, raw)}
    else
      v = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
    end
    for w = 1, 3 do
      local width = widths[w]
      local id = floor(now / width)
      local c = 4 + (w - 1) * 8
      local last = v[w]
      if last ~= id then
        if last == id - 1 then
          v[c + 4], v[c + 5], v[c + 6], v[c + 7] = v[c], v[c + 1], v[c + 2], v[c + 3]
        else
          v[c + 4], v[c + 5], v[c + 6], v[c + 7] = 0, 0, 0, 0
        end
        v[c], v[c + 1], v[c + 2], v[c + 3] = 0, 0, 0, 0
        v[w] = id
      end
      local x1, x2, x3, x4 = v[c] + a1, v[c + 1] + a2, v[c + 2] + a3, v[c + 3] + a4
      v[c], v[c + 1], v[c + 2], v[c + 3] = x1, x2, x3, x4
      local weight = 1 - (now - id * width) / width
      local e = 4 * w - 3
      sums[e] = floor(v[c + 4] * weight + x1)
      sums[e + 1] = floor(v[c + 5] * weight + x2)
      sums[e + 2] = floor(v[c + 6] * weight + x3)
      sums[e + 3] = floor(v[c + 7] * weight + x4)
    end
    if k < #KEYS then
      -- counts 1m, 1h, 24h, cents 1h, 24h, declines 1h
      answer[n + 1], answer[n + 2], answer[n + 3] = sums[1], sums[5], sums[9]
      answer[n + 4], answer[n + 5], answer[n + 6] = sums[6], sums[10], sums[7]
      n = n + 6
      redis.call('SET', KEYS[k], pack(layout, unpack(v, 1, 28)), 'PX', 90000000)
    end
  end
  if attempt and KEYS[first] ~= '' then
    -- The distinct-card set: card -> when last used (ms); an hour old is gone; at most 64 cards (a card
    -- past them takes the oldest's place, so the count stays at 64 while the burst goes on).
    local set = KEYS[first]
    redis.call('ZADD', set, now, ARGV[a + 3])
    redis.call('ZREMRANGEBYSCORE', set, '-inf', now - 3600000)
    local live = redis.call('ZCARD', set)
    if live > 64 then
      redis.call('ZREMRANGEBYRANK', set, 0, live - 65)
      live = 64
    end
    redis.call('PEXPIRE', set, 3700000)
    answer[3] = live
  end
  -- The merchant's minute (its sums are the last subject's) and its cool-off deadline.
  local count, declines, small = sums[1], sums[3], sums[4]
  answer[n + 1], answer[n + 2], answer[n + 3] = count, declines, small
  local minimum, ratio, cool_off = {minimum}, {ratio_pct}, {cool_off_ms}
  if count >= minimum and (declines * 100 >= ratio * count or small * 100 >= ratio * count) then
    if v[28] < now then answer[2] = 1 end
    v[28] = now + cool_off
  end
  if v[28] >= now then answer[1] = 1 end
  redis.call('SET', KEYS[#KEYS], pack(layout, unpack(v, 1, 28)), 'PX', 90000000)
  return answer
end
"""


@dataclass(frozen=True, slots=True)
class CardTesting:
    """When a merchant is under a card-testing burst: at least `minimum` authorizations in a minute, at
    least `ratio_pct` of them declined or small; the screening stays tightened for `cool_off_s`."""

    minimum: int = 20
    ratio_pct: int = 50
    cool_off_s: int = 600


class Subjects(msgspec.Struct, frozen=True, gc=False):
    """One payment's counter keys (hashed), kept on the payment's context so a decline adds to them. A
    card's subjects without an address or email are made once and shared by its payments (the screen
    keeps them with the card), so they are frozen. A Struct: a first-time card makes one for each of its
    payments, and a frozen dataclass's __init__ (Python, a setattr per field) took 1 µs of the 2 its
    subjects took; it holds only text and tuples of text, so the collector need not track it."""

    keys: tuple[str, ...]
    distinct: str
    card_member: str
    names: tuple[str, ...] = ()                        # the subjects, in the order of `keys`
    layout: Layout | None = None                       # where their attributes are in the script's answer
    script_keys: Packed = Packed(0, b"")               # the script's KEYS, `distinct` then `keys`, packed once

    def __post_init__(self) -> None:
        if not self.script_keys.size:
            msgspec.structs.force_setattr(self, "script_keys", packed(self.distinct, *self.keys))

    def script_args(self, now_ms: int, mode: str, usd_cents: int) -> tuple[object, ...]:
        """The script's ARGV; the card's name in the distinct set only when there is one (an address)."""
        if self.distinct:
            return now_ms, mode, usd_cents, self.card_member
        return now_ms, mode, usd_cents


class Velocity:
    def __init__(self, commands: RedisPipeliner, key: bytes, testing: CardTesting | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.commands = commands
        self.clock = clock
        self.key = hashlib.sha256(b"fraud velocity keys\0" + key).digest()[:32]
        self._keyed = hashlib.blake2b(key=self.key, digest_size=16)    # copied per hash: the key set up once
        testing = self.testing = testing or CardTesting()
        velocity = VELOCITY.replace("{minimum}", str(testing.minimum)).replace(
            "{ratio_pct}", str(testing.ratio_pct)).replace("{cool_off_ms}", str(testing.cool_off_s * 1000))
        self.sha = commands.register_script(velocity + "return velocity(1, 1)\n")
        # The same counters inside the idempotency lock's command, for a payment whose card is known
        # before the vault answers (its pipeliner must be the lock's: the same Redis).
        self.rider_sha = commands.register_script(lock_script_with(velocity, "velocity(first_key, first_arg)"))
        self.merchant_keys: dict[str, tuple[str, bytes]] = {}   # merchant -> its key, and the key packed

    def _hash(self, *parts: str) -> str:
        """Keyed BLAKE2b (a MAC, and a quarter of HMAC-SHA256's cost here)."""
        keyed = self._keyed.copy()
        keyed.update("\0".join(parts).encode())
        return keyed.hexdigest()

    def card_hash(self, card_number: str) -> str:
        """The card's counters' name: switch-wide, keyed, never the number."""
        return self._hash("card", card_number)

    def subjects(self, merchant_id: str, card: str, ip: str | None, email: str | None) -> Subjects:
        """The counters of a payment by the card's `card_hash`, its address and email and its merchant."""
        known = self.merchant_keys.get(merchant_id)
        if known is None:
            if len(self.merchant_keys) >= MERCHANT_KEYS_MAX:
                self.merchant_keys.clear()
            key = f"fv:{self._hash('merchant', merchant_id)}"
            known = self.merchant_keys[merchant_id] = (key, packed(key).data)
        merchant, merchant_packed = known
        if not ip and not email:
            # The script's KEYS ("", the card's, the merchant's) packed here: the merchant's part is made once.
            card_key = f"fv:{card}"
            script_keys = Packed(3, b"$0\r\n\r\n$%d\r\n%s\r\n%s" % (len(card_key), card_key.encode(), merchant_packed))
            return Subjects((card_key, merchant), "", card[:16], _CARD_MERCHANT, _CARD_MERCHANT_LAYOUT, script_keys)
        keys, names = [f"fv:{card}"], ["card"]
        distinct = ""
        if ip:
            ip_hash = self._hash("ip", merchant_id, ip)
            keys.append(f"fv:{ip_hash}")
            names.append("ip")
            distinct = f"fs:{ip_hash}"
        if email:
            keys.append(f"fv:{self._hash('email', merchant_id, email)}")
            names.append("email")
        keys.append(merchant)
        names.append("merchant")
        subjects = tuple(names)
        return Subjects(tuple(keys), distinct, card[:16], subjects, _layout(subjects))

    def attempt(self, subjects: Subjects, usd_cents: int, small: bool) -> asyncio.Future[object]:
        """Count an authorization attempt and read every counter (the future answers the script's list)."""
        return self._send(subjects, "s" if small else "a", usd_cents)

    def rider(self, subjects: Subjects, usd_cents: int, small: bool) -> Rider:
        """The attempt's count and read as a rider of the idempotency lock (one command for both)."""
        return Rider(self.rider_sha, subjects.script_keys,
                     subjects.script_args(int(self.clock() * 1000), "s" if small else "a", usd_cents))

    def decline(self, subjects: Subjects) -> None:
        """Count a decline (issuer or fraud block); nothing waits for it."""
        try:
            future = self._send(subjects, "d", 0)
        except RedisError:
            return
        future.add_done_callback(_ignore)

    def _send(self, subjects: Subjects, mode: str, usd_cents: int) -> asyncio.Future[object]:
        return self.commands.enqueue("EVALSHA", self.sha, subjects.script_keys.size, subjects.script_keys,
                                     *subjects.script_args(int(self.clock() * 1000), mode, usd_cents))


def _ignore(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


# What each subject's sums give the rules: (attribute, its place among the subject's sums in the script's
# answer, in US cents). A subject but the merchant answers 6 sums: counts over 1 minute, 1 hour and 24
# hours, US cents over 1 hour and 24 hours, declines over 1 hour; the merchant (always the last) answers 3:
# its count, declines and small authorizations over 1 minute. docs/fraud.md lists the attributes.
READS: dict[str, tuple[tuple[str, int, bool], ...]] = {
    "card": (("card_velocity_1m", 0, False), ("card_velocity_1h", 1, False), ("card_velocity_24h", 2, False),
             ("card_amount_usd_1h", 3, True), ("card_amount_usd_24h", 4, True), ("card_declines_1h", 5, False)),
    "ip": (("ip_velocity_1m", 0, False), ("ip_velocity_1h", 1, False), ("ip_velocity_24h", 2, False),
           ("ip_declines_1h", 5, False)),
    "email": (("email_velocity_1h", 1, False), ("email_velocity_24h", 2, False)),
    "merchant": (("merchant_velocity_1m", 0, False), ("merchant_declines_1m", 1, False),
                 ("merchant_small_1m", 2, False)),
}
SUMS_PER_SUBJECT = 6
ATTRIBUTES = tuple(name for reads in READS.values() for name, _, _ in reads) + ("ip_cards_1h",)


# Where a subject list's attributes are in the script's answer: (attribute, index, in US cents).
Layout = tuple[tuple[str, int, bool], ...]
_LAYOUTS: dict[tuple[str, ...], Layout] = {}


def _layout(names: tuple[str, ...]) -> Layout:
    layout = _LAYOUTS.get(names)
    if layout is None:
        layout = _LAYOUTS[names] = tuple(
            (attribute, 3 + SUMS_PER_SUBJECT * position + place, in_cents)
            for position, name in enumerate(names) for attribute, place, in_cents in READS[name])
    return layout


_CARD_MERCHANT_LAYOUT = _layout(_CARD_MERCHANT)


def read(subjects: Subjects, answer: list[int], into: dict[str, Any]) -> tuple[bool, bool]:
    """The script's answer as attributes in `into` (``card_velocity_1h``, ``ip_cards_1h``...); whether the
    merchant is in a card-testing cool-off, and whether this payment started it."""
    for attribute, index, cents in subjects.layout or _layout(subjects.names):
        into[attribute] = answer[index] / 100 if cents else answer[index]
    if subjects.distinct:
        into["ip_cards_1h"] = answer[2]
    return bool(answer[0]), bool(answer[1])

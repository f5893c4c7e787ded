"""Velocity counters in Redis: attempts, US-dollar amounts, declines and small authorizations per card,
address, email and merchant over sliding windows of 1 minute, 1 hour and 24 hours, the distinct cards an
address used in the last hour, and the merchant's card-testing cool-off.

One Lua script per payment updates and reads every counter of its subjects at once; it goes out on the
worker's Redis pipeline with concurrent requests' commands (switch.idempotency.pipeline). A decline adds
to the same counters by a command that nothing waits for. Keys are keyed hashes (HMAC-SHA256 under the
switch's key): no fingerprint, address or email is ever a Redis key, and the card's counters are
switch-wide (a stolen card is tried at many merchants) while the address's and email's are per merchant.
Every key expires 25 hours after its last use; an address's distinct-card set holds at most 64 cards.

Windows slide in steps: 10 s for the minute, 5 min for the hour, 1 h for the day (6, 12 and 24 buckets
in a ring, one msgpack array per subject).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from switch.idempotency.pipeline import RedisPipeliner

METRICS = ("velocity", "amount_usd", "declines", "small")
WINDOW_NAMES = ("1m", "1h", "24h")
DISTINCT_MAX = 64

# KEYS: [1] the merchant's cool-off flag, [2] the address's distinct-card set (or "" without an address),
# [3..] the subjects' counters, the merchant's last. ARGV: mode ('a' attempt, 'd' decline), US cents, small
# (0/1), the card's member name in the distinct set, cool-off ms, card-testing minimum count, ratio (%).
# Answers {testing (0/1), testing_started (0/1), distinct cards, then per subject 3 windows x 4 metrics}.
SCRIPT = """
local windows = {{10000, 6}, {300000, 12}, {3600000, 24}}
local size = 3 + 4 * (6 + 12 + 24)
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local attempt = ARGV[1] == 'a'
local add = {0, 0, 1, 0}
if attempt then add = {1, tonumber(ARGV[2]), 0, tonumber(ARGV[3])} end
local answer = {0, 0, 0}
local last_totals
for k = 3, #KEYS do
  local raw = redis.call('GET', KEYS[k])
  local s
  if raw then s = cmsgpack.unpack(raw) end
  if not s or #s ~= size then
    s = {}
    for i = 1, size do s[i] = 0 end
    local at = 1
    for w = 1, 3 do s[at] = math.floor(now / windows[w][1]); at = at + 1 + 4 * windows[w][2] end
  end
  local at = 1
  for w = 1, 3 do
    local width, n = windows[w][1], windows[w][2]
    local bucket = math.floor(now / width)
    local gap = math.min(bucket - s[at], n)
    for g = 1, gap do
      local base = at + 1 + ((s[at] + g) % n) * 4
      for m = 0, 3 do s[base + m] = 0 end
    end
    if gap > 0 then s[at] = bucket end
    local slot = at + 1 + (s[at] % n) * 4
    for m = 0, 3 do s[slot + m] = s[slot + m] + add[m + 1] end
    local totals = {0, 0, 0, 0}
    for i = 0, n - 1 do
      local base = at + 1 + i * 4
      for m = 0, 3 do totals[m + 1] = totals[m + 1] + s[base + m] end
    end
    for m = 1, 4 do answer[#answer + 1] = totals[m] end
    if w == 1 then last_totals = totals end
    at = at + 1 + 4 * n
  end
  redis.call('SET', KEYS[k], cmsgpack.pack(s), 'PX', 90000000)
end
if attempt and KEYS[2] ~= '' then
  local bucket = math.floor(now / 300000)
  local cards = redis.call('HGETALL', KEYS[2])
  local live, known = 0, false
  for i = 1, #cards, 2 do
    if tonumber(cards[i + 1]) > bucket - 12 then
      live = live + 1
      if cards[i] == ARGV[4] then known = true end
    else
      redis.call('HDEL', KEYS[2], cards[i])
    end
  end
  if known or live < 64 then
    redis.call('HSET', KEYS[2], ARGV[4], bucket)
    if not known then live = live + 1 end
  end
  redis.call('PEXPIRE', KEYS[2], 3700000)
  answer[3] = live
end
local minimum, ratio = tonumber(ARGV[6]), tonumber(ARGV[7])
local count, declines, small = last_totals[1], last_totals[3], last_totals[4]
if count >= minimum and (declines * 100 >= ratio * count or small * 100 >= ratio * count) then
  if redis.call('SET', KEYS[1], '1', 'PX', ARGV[5], 'NX') then answer[2] = 1 end
  answer[1] = 1
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  answer[1] = 1
end
return answer
"""


@dataclass(frozen=True, slots=True)
class CardTesting:
    """When a merchant is under a card-testing burst: at least `minimum` authorizations in a minute, at
    least `ratio_pct` of them declined or small; the screening stays tightened for `cool_off_s`."""

    minimum: int = 20
    ratio_pct: int = 50
    cool_off_s: int = 600


@dataclass(slots=True)
class Subjects:
    """One payment's counter keys (hashed), kept on the payment's context so a decline adds to them."""

    keys: list[str]
    flag: str
    distinct: str
    card_member: str
    names: list[str] = field(default_factory=list)     # the subjects, in the order of `keys`


class Velocity:
    def __init__(self, commands: RedisPipeliner, key: bytes, testing: CardTesting | None = None) -> None:
        self.commands = commands
        self.key = hashlib.sha256(b"fraud velocity keys\0" + key).digest()
        self.testing = testing or CardTesting()
        self.sha = commands.register_script(SCRIPT)

    def _hash(self, *parts: str) -> str:
        return hmac.new(self.key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def subjects(self, merchant_id: str, card_number: str, ip: str | None, email: str | None) -> Subjects:
        card = self._hash("card", card_number)
        keys, names = [f"fv:{card}"], ["card"]
        if ip:
            keys.append(f"fv:{self._hash('ip', merchant_id, ip)}")
            names.append("ip")
        if email:
            keys.append(f"fv:{self._hash('email', merchant_id, email)}")
            names.append("email")
        merchant = self._hash("merchant", merchant_id)
        keys.append(f"fv:{merchant}")
        names.append("merchant")
        distinct = f"fd:{self._hash('ip', merchant_id, ip)}" if ip else ""
        return Subjects(keys, f"ft:{merchant}", distinct, card[:16], names)

    def attempt(self, subjects: Subjects, usd_cents: int, small: bool) -> asyncio.Future[object]:
        """Count an authorization attempt and read every counter (the future answers the script's list)."""
        return self._send(subjects, "a", usd_cents, small)

    def decline(self, subjects: Subjects) -> None:
        """Count a decline (issuer or fraud block); nothing waits for it."""
        try:
            future = self._send(subjects, "d", 0, False)
        except RedisError:
            return
        future.add_done_callback(_ignore)

    def _send(self, subjects: Subjects, mode: str, usd_cents: int, small: bool) -> asyncio.Future[object]:
        testing = self.testing
        return self.commands.enqueue(
            "EVALSHA", self.sha, 2 + len(subjects.keys), subjects.flag, subjects.distinct, *subjects.keys, mode,
            usd_cents, int(small), subjects.card_member, testing.cool_off_s * 1000, testing.minimum,
            testing.ratio_pct)


def _ignore(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def read(subjects: Subjects, answer: list[int]) -> tuple[dict[str, float], bool, bool]:
    """The script's answer as attributes (``card_velocity_1h``, ``ip_cards_1h``...), whether the merchant
    is in a card-testing cool-off, and whether this payment started it."""
    values: dict[str, float] = {}
    at = 3
    for name in subjects.names:
        for window in WINDOW_NAMES:
            count, cents, declines, small = answer[at:at + 4]
            values[f"{name}_velocity_{window}"] = count
            if name != "merchant":
                values[f"{name}_amount_usd_{window}"] = cents / 100
            if name != "email":
                values[f"{name}_declines_{window}"] = declines
            if name == "merchant" and window == "1m":
                values["merchant_small_1m"] = small
            at += 4
    if subjects.distinct:
        values["ip_cards_1h"] = answer[2]
    return values, bool(answer[0]), bool(answer[1])

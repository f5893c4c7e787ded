"""Leak scan (PCI DSS 3.3.1, 3.4.1, 3.5.1): after a full flow, no full PAN or CVC is anywhere we keep data.

The flow runs through the real switch and vault: a raw-card payment with a CVC, capture, refund, a payment
with the resulting token, a decline, the same card data form-encoded through the Stripe-compatible API (a
PaymentIntent, a saved PaymentMethod, a refused CVC), and a card tokenized on the vault's public endpoint then
paid with by token. Then it scans every process log and every file of the run directory, every row of every table of
both schemas (logical contents over SQL: the data files would show only what the tables hold, plus pages
Postgres has not reused yet), and every Redis key and value. A hit fails the test and names where it was,
with the PAN masked. A positive control first proves the scanner finds what is planted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from loadtest.httpclient import Client
from switch.common.cards import CardNumber
from switch.dev.devstack import Stack
from tests.integration.helpers import VISA_DECLINE, key
from tests.vault.conftest import make_pan, run_vault_cli

pytestmark = pytest.mark.integration

CVC_CANDIDATES = 40     # 4-digit CVCs tried for the two the flow sends (unused_cvcs)
FLOW_NUMBERS = {"4200", "1000", "3200", "1300", "1400", "1500", "2031", "2032"}   # its amounts, years
REDIS_VALUES_MAX = 100_000
FILE_BYTES_MAX = 256 * 1024 * 1024


@dataclass(frozen=True)
class Needle:
    """A byte pattern that must not appear, with the label to print instead of the secret itself."""

    label: str
    pattern: re.Pattern[bytes]
    # Looked for in Postgres's number and time columns too. A bare 4-digit CVC is not: amounts, counts,
    # latencies and the fractions of timestamps written while the flow runs would match one by chance,
    # and a CVC that reached such a column would have had to be parsed as a number first.
    in_numbers: bool = True


def pan_needles(pans: Iterable[str]) -> list[Needle]:
    return [Needle(f"PAN {CardNumber(pan).masked}", re.compile(re.escape(pan.encode()))) for pan in pans]


def cvc_needles(cvc: str) -> list[Needle]:
    value = re.escape(cvc.encode())
    return [
        # As a JSON / Python / form field, in any quoting and spacing.
        Needle("CVC field ****", re.compile(rb"""cv[cv2]?["']?\s*[:=]\s*["']?""" + value + rb"(?![0-9])")),
        # As msgpack: fixstr "cvc" followed by fixstr of the value.
        Needle("CVC msgpack ****", re.compile(re.escape(b"\xa3cvc" + bytes([0xA0 | len(cvc)]) + cvc.encode()))),
        # On its own, not part of a longer number or id.
        Needle("CVC raw ****", re.compile(rb"(?<![0-9A-Za-z_\-])" + value + rb"(?![0-9A-Za-z_\-])"), False),
    ]


def find(needles: list[Needle], where: str, data: bytes) -> list[str]:
    return [f"{needle.label} in {where}" for needle in needles if needle.pattern.search(data)]


# ----- the scanners ---------------------------------------------------------------------------------------


# Postgres's own server lines: start-up, its socket's name (the port), checkpoints and autovacuum, full of
# counts, sizes and times that a 4-digit CVC matches by chance (a session's log holds many; CI once failed
# on one). No card data can be in them; statements, parameters, errors and their details stay scanned.
POSTGRES_OWN_LINES = re.compile(
    rb"^.*LOG:  (starting PostgreSQL|listening on|database system|checkpoint (starting|complete)|"
    rb"automatic (vacuum|analyze)|redo |restartpoint).*$", re.MULTILINE)


def scan_files(run_dir: Path, needles: list[Needle]) -> tuple[list[str], int]:
    """Every regular file under the run directory (logs included). Postgres's own data directory is skipped:
    its logical contents are scanned over SQL."""
    hits: list[str] = []
    scanned = 0
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or path.is_symlink() or (run_dir / "pg") in path.parents:
            continue
        data = path.read_bytes()[:FILE_BYTES_MAX]
        if path.name == "postgres.log":
            data = POSTGRES_OWN_LINES.sub(b"", data)
        scanned += 1
        hits += find(needles, f"file {path.relative_to(run_dir)}", data)
    return hits, scanned


NUMBER_AND_TIME_TYPES = {"smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean",
                         "timestamp with time zone", "timestamp without time zone", "date", "interval",
                         "time with time zone", "time without time zone"}


def _row_text(columns: list[str]) -> str:
    quoted = ", ".join(f't."{column}"' for column in columns)
    return f"ROW({quoted})::text" if columns else "''"


async def scan_postgres(admin_url: str, needles: list[Needle]) -> tuple[list[str], int]:
    """Every row of every table outside the system schemas, as text (text, jsonb, numbers, ...) and every
    bytea value as raw bytes; a needle that is not looked for in numbers (Needle.in_numbers) sees the row
    without its number and time columns. Columns a sequence or the transaction numbers (serial ids, `events.xid`) are
    left out: they hold no data anyone sent, and an id or a transaction of the flow could read as a 4-digit
    CVC."""
    hits: list[str] = []
    rows_scanned = 0
    everywhere = [needle for needle in needles if needle.in_numbers]
    not_in_numbers = [needle for needle in needles if not needle.in_numbers]
    connection = await asyncpg.connect(admin_url)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            byteas = [row["column_name"] for row in await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2"
                " AND data_type = 'bytea'", table["table_schema"], table["table_name"])]
            texts = [(row["column_name"], row["data_type"]) for row in await connection.fetch(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1"
                " AND table_name = $2 AND data_type <> 'bytea' AND coalesce(column_default, '') NOT LIKE 'nextval(%'"
                " AND coalesce(column_default, '') NOT LIKE 'pg_current_xact_id(%'"
                " ORDER BY ordinal_position", table["table_schema"], table["table_name"])]
            line = _row_text([column for column, _ in texts])
            words = _row_text([column for column, kind in texts if kind not in NUMBER_AND_TIME_TYPES])
            columns = "".join(f', "{column}"' for column in byteas)
            query = f"SELECT {line} AS line, {words} AS words{columns} FROM {name} AS t"  # noqa: S608
            for row in await connection.fetch(query):
                rows_scanned += 1
                where = f"table {name}"
                hits += find(everywhere, where, row["line"].encode())
                hits += find(not_in_numbers, where, row["words"].encode())
                for column in byteas:
                    if row[column] is not None:
                        hits += find(needles, f"{where} column {column}", bytes(row[column]))
    finally:
        await connection.close()
    return hits, rows_scanned


async def _redis_values(client: Any, name: bytes) -> list[bytes]:
    # redis-py's stubs type every reply as bytes | str; without decode_responses they are bytes.
    kind = (await client.type(name)).decode()
    if kind == "string":
        return [await client.get(name) or b""]
    if kind == "hash":
        return [part for pair in (await client.hgetall(name)).items() for part in pair]
    if kind == "list":
        return list(await client.lrange(name, 0, -1))
    if kind == "set":
        return list(await client.smembers(name))
    if kind == "zset":
        return [member for member, _ in await client.zrange(name, 0, -1, withscores=True)]
    if kind == "stream":
        return [part for _, fields in await client.xrange(name) for pair in fields.items() for part in pair]
    return []


async def scan_redis(url: str, needles: list[Needle]) -> tuple[list[str], int]:
    hits: list[str] = []
    keys_scanned = 0
    client = redis.Redis.from_url(url)
    try:
        async for name in client.scan_iter(count=1000):
            keys_scanned += 1
            assert keys_scanned <= REDIS_VALUES_MAX, "more Redis keys than the scan is bounded to"
            where = f"redis key {hashlib.sha256(name).hexdigest()[:12]}"
            hits += find(needles, f"{where} (name)", name)
            for value in await _redis_values(client, name):
                hits += find(needles, where, value)
    finally:
        await client.aclose()
    return hits, keys_scanned


async def scan_everything(stack: Stack, needles: list[Needle]) -> tuple[list[str], dict[str, int]]:
    file_hits, files = scan_files(stack.run_dir, needles)
    table_hits, rows = await scan_postgres(stack.database_admin_url, needles)
    redis_hits, keys = await scan_redis(stack.redis_url, needles)
    return file_hits + table_hits + redis_hits, {"files": files, "rows": rows, "redis_keys": keys}


async def unused_cvcs(stack: Stack, avoid: set[str]) -> tuple[str, str]:
    """Two 4-digit CVCs (amex's length) that nothing the suite kept so far holds as a number on its own, nor
    `avoid`. The scan looks for the CVCs on their own as well as in fields, and the tests before this one
    leave thousands of rows of amounts and random cards' last four digits: a fixed CVC once matched one by
    chance. Chosen this way, a hit after the flow is the flow's."""
    candidates = [f"{n}" for n in random.sample(range(1000, 10000), CVC_CANDIDATES) if f"{n}" not in avoid]
    hits, _ = await scan_everything(stack, [dataclasses.replace(cvc_needles(cvc)[2], label=cvc) for cvc in candidates])
    taken = {hit.split(" in ", 1)[0] for hit in hits}
    free = [cvc for cvc in candidates if cvc not in taken]
    assert len(free) >= 2, f"{len(taken)} of {len(candidates)} candidate CVCs are in the data already"
    return free[0], free[1]


# ----- the flow -------------------------------------------------------------------------------------------


async def _merchant_id(stack: Stack) -> str:
    connection = await asyncpg.connect(stack.database_url)
    try:
        merchant_id: str = await connection.fetchval(
            "SELECT merchant_id FROM api_keys WHERE key_hash = $1", hashlib.sha256(stack.api_key.encode()).digest())
    finally:
        await connection.close()
    return merchant_id


def _card(number: str, cvc: str, exp_year: int = 2032) -> dict[str, object]:
    return {"card": {"number": number, "exp_month": 10, "exp_year": exp_year, "cvc": cvc}}


async def run_flow(stack: Stack, api: Client, raw_pan: str, public_pan: str, cvc_raw: str, cvc_public: str) -> str:
    """The whole flow; returns one token id (a value the database must hold, for the positive control)."""
    created = await api.request("POST", "/v1/payments", {
        "amount": 4200, "currency": "usd", "capture_method": "manual",
        "payment_method": _card(raw_pan, cvc_raw)}, idempotency_key=key("leak"))
    assert created.status == 200, created.body
    payment = created.json()
    token = payment["payment_method"]["token"]
    captured = await api.request("POST", f"/v1/payments/{payment['id']}/capture", {}, idempotency_key=key("leak"))
    assert captured.status == 200 and captured.json()["status"] == "succeeded", captured.body
    refund = await api.request("POST", "/v1/refunds", {"payment": payment["id"], "amount": 1000},
                               idempotency_key=key("leak"))
    assert refund.status == 200 and refund.json()["status"] == "succeeded", refund.body
    again = await api.request("POST", "/v1/payments", {"amount": 1300, "currency": "usd",
                                                       "payment_method": token}, idempotency_key=key("leak"))
    assert again.status == 200 and again.json()["status"] == "succeeded", again.body
    declined = await api.request("POST", "/v1/payments", {"amount": 1400, "currency": "usd",
                                                          "payment_method": _card(VISA_DECLINE, "123")},
                                 idempotency_key=key("leak"))
    assert declined.status == 402, declined.body

    # The same card data through the Stripe-compatible API, form-encoded as the SDKs send it: a
    # PaymentIntent with card data, a saved PaymentMethod, and a card error (the vault refuses a CVC).
    form = {"content-type": "application/x-www-form-urlencoded"}
    stripe_intent = await api.request("POST", "/stripe/v1/payment_intents", (
        f"amount=900&currency=usd&confirm=true&payment_method_data[type]=card&payment_method_data[card][number]="
        f"{raw_pan}&payment_method_data[card][exp_month]=12&payment_method_data[card][exp_year]=2031"
        f"&payment_method_data[card][cvc]={cvc_raw}").encode(), idempotency_key=key("leak"), headers=form)
    assert stripe_intent.status == 200, stripe_intent.body
    saved = await api.request("POST", "/stripe/v1/payment_methods", (
        f"type=card&card[number]={public_pan}&card[exp_month]=12&card[exp_year]=2031&card[cvc]={cvc_public}"
    ).encode(), idempotency_key=key("leak"), headers=form)
    assert saved.status == 200, saved.body
    bad_cvc = await api.request("POST", "/stripe/v1/payment_methods", (
        f"type=card&card[number]={raw_pan}&card[exp_month]=12&card[exp_year]=2031&card[cvc]=1{cvc_raw}"
    ).encode(), idempotency_key=key("leak"), headers=form)
    assert bad_cvc.status in (400, 402), bad_cvc.body
    # A PaymentIntent kept for later confirmation, with a test token and card data beside it: refused, and
    # its card data never kept with the draft.
    token_and_card = await api.request("POST", "/stripe/v1/payment_intents", (
        f"amount=900&currency=usd&payment_method_data[type]=card&payment_method_data[card][token]=tok_visa"
        f"&payment_method_data[card][number]={raw_pan}&payment_method_data[card][cvc]={cvc_raw}").encode(),
        idempotency_key=key("leak"), headers=form)
    assert token_and_card.status == 400, token_and_card.body
    # A JSON body sent as a form, and an unknown payment method that is a card number: the errors quote
    # neither.
    as_form = await api.request("POST", "/stripe/v1/payment_intents", (
        f'{{"amount": 900, "payment_method_data": {{"card": {{"number": "{raw_pan}", "cvc": "{cvc_raw}"}}}}}}'
    ).encode(), idempotency_key=key("leak"), headers=form)
    named = await api.request("POST", "/stripe/v1/payment_intents", f"amount=900&currency=usd&confirm=true"
                              f"&payment_method={raw_pan}".encode(), idempotency_key=key("leak"), headers=form)
    for refused in (as_form, named):
        assert refused.status in (400, 404), refused.body
        assert raw_pan.encode() not in refused.body and cvc_raw.encode() not in refused.body, refused.body

    # The merchant's page tokenizes on the vault; the merchant's server pays with the token.
    result = run_vault_cli(stack, "publishable-keys", "create", "--merchant", await _merchant_id(stack), "--quiet")
    assert result.returncode == 0, result.stderr
    page = Client(stack.vault_http_url, result.stdout.strip())
    try:
        tokenized = await page.request("POST", "/v1/tokens", _card(public_pan, cvc_public),
                                       headers={"origin": "https://shop.example"})
    finally:
        await page.close()
    assert tokenized.status == 200, tokenized.body
    public_token = tokenized.json()["id"]
    paid = await api.request("POST", "/v1/payments", {"amount": 1500, "currency": "usd",
                                                      "payment_method": public_token}, idempotency_key=key("leak"))
    assert paid.status == 200 and paid.json()["status"] == "succeeded", paid.body
    assert paid.json()["payment_method"]["card"]["last4"] == public_pan[-4:]
    # Let the vault flush its audit batch and every process write its logs.
    await asyncio.sleep(0.5)
    return str(public_token)


async def test_no_pan_or_cvc_anywhere_after_a_full_flow(stack: Stack, api: Client) -> None:
    raw_pan = make_pan("378282", 15)
    public_pan = make_pan("371449", 15)
    cvc_raw, cvc_public = await unused_cvcs(stack, {raw_pan[-4:], public_pan[-4:], VISA_DECLINE[-4:], *FLOW_NUMBERS})
    public_token = await run_flow(stack, api, raw_pan, public_pan, cvc_raw, cvc_public)

    # Positive control: the scanner finds a planted file, a planted Redis value and a stored token id.
    canary = make_pan("601100")
    canary_file = stack.run_dir / "leak-scan-canary.txt"
    canary_file.write_text(f'{{"cvc": "{cvc_raw}"}}')
    client = redis.Redis.from_url(stack.redis_url)
    await client.hset("leak-scan-canary", "number", canary)
    try:
        control = [*pan_needles([canary]), *cvc_needles(cvc_raw)[:1],
                   Needle("stored token id", re.compile(re.escape(public_token.encode())))]
        found, _ = await scan_everything(stack, control)
    finally:
        canary_file.unlink()
        await client.delete("leak-scan-canary")
        await client.aclose()
    assert any(hit.startswith("CVC field") and "leak-scan-canary.txt" in hit for hit in found), found
    assert any(hit.startswith("PAN 601100") and "redis key" in hit for hit in found), found
    assert any("stored token id in table \"vault\".\"tokens\"" in hit for hit in found), found

    needles = [*pan_needles([raw_pan, public_pan, VISA_DECLINE]), *cvc_needles(cvc_raw), *cvc_needles(cvc_public)]
    hits, scanned = await scan_everything(stack, needles)
    print(f"leak scan: {scanned['files']} files, {scanned['rows']} rows, {scanned['redis_keys']} Redis keys")
    assert scanned["files"] > 0 and scanned["rows"] > 0 and scanned["redis_keys"] > 0, scanned
    assert any(path.suffix == ".log" for path in stack.run_dir.iterdir())
    assert not hits, "card data found:\n" + "\n".join(sorted(set(hits)))

"""One merchant's bad row never fails another merchant's request: a group-committed batch that Postgres
refuses is split until the bad row stands alone, and only that row's request fails."""

from __future__ import annotations

import asyncio
import re

import pytest

from loadtest.httpclient import Client, HttpResponse
from tests.integration.helpers import key, payment
from tests.integration.solo import eventually

pytestmark = pytest.mark.integration

GOOD_PAYMENTS = 200
BAD_PAYMENTS = 20
CONNECTIONS = 20


async def _send_all(url: str, api_key: str, bodies: list[dict]) -> list[HttpResponse]:
    """Every body on its own key, spread over CONNECTIONS connections at once."""
    clients = [Client(url, api_key) for _ in range(CONNECTIONS)]
    queue = list(enumerate(bodies))
    answers: list[HttpResponse | None] = [None] * len(bodies)

    async def drain(client: Client) -> None:
        while queue:
            index, body = queue.pop()
            answers[index] = await client.request("POST", "/v1/payments", body, idempotency_key=key("iso"))

    try:
        await asyncio.gather(*(drain(client) for client in clients))
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    assert all(answer is not None for answer in answers)
    return answers  # type: ignore[return-value]


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _metrics(stack) -> str:
    ops = Client(stack.switch_ops_url, "")
    try:
        return (await ops.request("GET", "/metrics")).body.decode()
    finally:
        await ops.close()


async def _mixed_run(stack, bad_body: dict) -> tuple[list[HttpResponse], list[HttpResponse]]:
    other_merchant = stack.seed_merchant("batch-neighbour")
    good, bad = await asyncio.gather(
        _send_all(stack.switch_url, other_merchant, [payment(1000 + i) for i in range(GOOD_PAYMENTS)]),
        _send_all(stack.switch_url, stack.api_key, [dict(bad_body) for _ in range(BAD_PAYMENTS)]))
    assert [r.status for r in good] == [200] * GOOD_PAYMENTS, sorted({r.status for r in good})
    return good, bad


async def test_a_row_postgres_refuses_fails_alone(api: Client, stack, db) -> None:
    # A constraint only this test's rows break stands in for any value Postgres refuses.
    await db.execute("ALTER TABLE payments ADD CONSTRAINT test_refused_row CHECK (description <> 'refused-row')")
    splits_before = _metric(await _metrics(stack), "switch_batch_splits_total")
    try:
        _, bad = await _mixed_run(stack, payment(777, description="refused-row"))
    finally:
        await db.execute("ALTER TABLE payments DROP CONSTRAINT test_refused_row")
    assert {r.status for r in bad} == {400}
    assert {r.json()["error"]["code"] for r in bad} == {"parameter_invalid"}
    assert await db.fetchval("SELECT count(*) FROM payments WHERE description = 'refused-row'") == 0
    # Whether a bad row shared a batch with good ones depends on timing; over 220 payments it always has.
    assert _metric(await _metrics(stack), "switch_batch_splits_total") > splits_before


async def test_nul_in_any_text_field_is_a_400_naming_the_field(api: Client, stack) -> None:
    cases = {"description": payment(500, description="a\u0000b"),
             "statement_descriptor": payment(500, statement_descriptor="SHOP\r\nX"),
             "metadata": payment(500, metadata={"k\u0000": "v"})}
    for field, body in cases.items():
        response = await api.request("POST", "/v1/payments", body, idempotency_key=key("nul"))
        assert response.status == 400, field
        error = response.json()["error"]
        assert error["code"] == "parameter_invalid" and error["param"].startswith(field), error
    _, bad = await _mixed_run(stack, payment(500, metadata={"note": "x\u0000y"}))
    assert {r.status for r in bad} == {400}


async def test_an_unexpected_failure_is_a_counted_500_with_its_request_id_and_frees_the_key(
        api: Client, stack, db) -> None:
    # A trigger raising for one description: an error no one expects, of this row only.
    await db.execute("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "IF NEW.description = 'boom-row' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$")
    await db.execute("CREATE TRIGGER test_refuse BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION test_refuse()")
    errors_before = _metric(await _metrics(stack), "switch_http_requests_total", status="500")
    idem = key("boom")
    try:
        _, bad = await _mixed_run(stack, payment(778, description="boom-row"))
        first = await api.request("POST", "/v1/payments", payment(778, description="boom-row"), idempotency_key=idem)
        again = await api.request("POST", "/v1/payments", payment(778, description="boom-row"), idempotency_key=idem)
    finally:
        await db.execute("DROP TRIGGER test_refuse ON payments")
        await db.execute("DROP FUNCTION test_refuse()")
    assert {r.status for r in bad} == {500}
    assert first.status == 500 and again.status == 500     # not 409: the failed request's lock was released
    error = first.json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == first.headers["request-id"]
    assert re.fullmatch(r"req_[0-9A-Za-z_-]{16}", error["request_id"])

    async def all_counted() -> bool:    # handed to the exposition once a second (switch.common.metrics.Flushed)
        errors = _metric(await _metrics(stack), "switch_http_requests_total", status="500")
        return errors >= errors_before + BAD_PAYMENTS + 2

    assert await eventually(all_counted, 5.0)
    healed = await api.request("POST", "/v1/payments", payment(778, description="boom-row"), idempotency_key=idem)
    assert healed.status == 200                            # nothing was written: the same key now goes through

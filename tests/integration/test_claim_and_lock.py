"""The single-row transactions' first statement: claim the request's key and lock the payment it names."""

from __future__ import annotations

import pytest

from loadtest.httpclient import Client
from switch.store import payments as payment_store
from switch.store import pool as store_pool
from tests.integration.helpers import key, payment

pytestmark = pytest.mark.integration


class Rollback(Exception):
    """Leaves a transaction block, rolling back what it wrote."""


async def test_a_claim_answers_whether_the_key_was_new_and_the_merchants_payment(api: Client, stack) -> None:
    body = (await api.request("POST", "/v1/payments", payment(900), idempotency_key=key())).json()
    pool = await store_pool.create_pool(stack.database_url, 4)
    try:
        merchant = await pool.fetchval("SELECT merchant_id FROM payments WHERE id = $1", body["id"])
        claim = key()
        async with pool.acquire() as conn, conn.transaction():
            claimed, locked = await payment_store.claim_and_lock(conn, merchant, claim, "/p", b"f", body["id"])
            assert claimed and locked is not None
            assert (locked.id, locked.amount, locked.status) == (body["id"], 900, "requires_capture")
            assert locked.fraud is not None and locked.fraud.risk_level == body["outcome"]["risk_level"]
            # Held: another transaction cannot lock the row until this one ends.
            async with pool.acquire() as other, other.transaction():
                await other.execute("SET LOCAL lock_timeout = '100ms'")
                with pytest.raises(Exception, match="lock timeout"):
                    await other.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", body["id"])
        async with pool.acquire() as conn, conn.transaction():
            again = await payment_store.claim_and_lock(conn, merchant, claim, "/p", b"f", body["id"])
            assert again[0] is False and again[1] is not None         # the key has its row: not claimed
            missing = await payment_store.claim_and_lock(conn, merchant, key(), "/p", b"f", "pay_missing")
            assert missing == (True, None)
            await conn.execute("INSERT INTO merchants (id, name) VALUES ('acct_claim_other', 'other')")
            other_merchant = await payment_store.claim_and_lock(conn, "acct_claim_other", key(), "/p", b"f",
                                                                body["id"])
            assert other_merchant == (True, None)                  # another merchant's payment is not found
            raise Rollback
    except Rollback:
        pass
    finally:
        await pool.close()

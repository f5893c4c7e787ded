"""Settlement exceptions an operator works: the lines of active files that did not match, each resolved
once, with who, when, what and why (`settlement_resolutions`).

Actions:
- `acknowledge`: investigated, nothing to book (a duplicate the network will reverse, say);
- `dispute`: raised with the network; the receivable stays open;
- `write_off`: an amount mismatch accepted as the network settled it. The line is posted as settled and
  the difference goes to `expense:<network>:settlement_differences`; the payment becomes `settled` and its
  net is released to the merchant's available balance (what we captured: the difference is ours).
"""

from __future__ import annotations

import asyncpg

from switch.ledger import postings
from switch.store import ledger as ledger_store
from switch.store import settlement as settlement_store
from switch.store.records import LedgerEntry

ACTIONS = ("acknowledge", "dispute", "write_off")


class ResolutionRefused(Exception):
    """The exception cannot be resolved so (not found, resolved already, or the action does not apply)."""


async def resolve(conn: asyncpg.Connection, file_id: int, line_no: int, action: str, reason: str,
                  actor: str) -> asyncpg.Record:
    if action not in ACTIONS:
        raise ResolutionRefused(f"the action is one of {', '.join(ACTIONS)}")
    reason = reason.strip()
    if not reason or len(reason) > 1000 or not reason.isprintable():
        raise ResolutionRefused("a reason is 1 to 1,000 printable characters")
    async with conn.transaction():
        found = await settlement_store.get_exception(conn, file_id, line_no)
        if found is None:
            raise ResolutionRefused(f"no exception at file {file_id} line {line_no}")
        if found["action"] is not None:
            raise ResolutionRefused(f"resolved already ({found['action']} by {found['actor']})")
        if action == "write_off":
            await _write_off(conn, found)
        await settlement_store.insert_resolution(conn, file_id, line_no, action, reason, actor)
        resolved = await settlement_store.get_exception(conn, file_id, line_no)
        assert resolved is not None
        return resolved


async def _write_off(conn: asyncpg.Connection, line: asyncpg.Record) -> None:
    if line["class"] != "amount_mismatch" or line["refund_id"] is not None:
        raise ResolutionRefused("a write-off applies to a capture's or a sale's amount mismatch")
    ours, theirs, fee = line["ours_amount_minor"], line["theirs_amount_minor"], line["interchange_fee_minor"] or 0
    network, currency, posting = line["network"], line["our_currency"], f"settle:{line['file_id']}:{line['line_no']}"
    entries = [LedgerEntry(posting, line["payment_id"], account, amount, currency) for account, amount in (
        (f"network:{network}:receivable", -ours), (f"settlement:{network}:bank", theirs - fee),
        (f"expense:{network}:interchange", fee), (f"expense:{network}:settlement_differences", ours - theirs))
        if amount]
    assert sum(entry.amount for entry in entries) == 0
    settled = await settlement_store.mark_settled(conn, line["payment_id"])
    if settled is not None:
        entries += postings.release(posting, line["payment_id"], settled["merchant_id"], settled["currency"],
                                    settled["amount_received"])
    await ledger_store.insert_entries(conn, entries)

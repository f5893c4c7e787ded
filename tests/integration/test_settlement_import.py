"""Settlement import against the simulator's real files: our captures, sales and refunds match line for
line; importing the same file again changes nothing; a corrected re-issue of the cut-off supersedes it,
and each planted discrepancy is found as its class (amount, duplicate, unknown item, currency, settled
after its reversal), with the command exiting 1 and its reports written."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from loadtest.httpclient import Client
from switch.common.fees import fee_minor
from switch.settlement.imports import HEADER
from tests.conftest import simulator
from tests.integration.helpers import key, luhn_card, payment

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def shop(stack) -> Client:  # type: ignore[no-untyped-def]
    client = Client(stack.switch_url, stack.seed_merchant("settlement-shop", fraud_rules="lists"))
    yield client
    await client.close()


async def _pay(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.request("POST", "/v1/payments", body, idempotency_key=key("st"))
    assert answer.status == 200, answer.body
    return answer.json()


async def _import(stack, reports: Path, *files: Path) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    argv = [sys.executable, "-m", "switch", "settlement", "import", "--network", "visa", "--reports-dir",
            str(reports), *map(str, files)]
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                   env={**os.environ, **stack.switch_env()})


async def _until_sent(db, payment_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait (5 s at most) until the network acknowledged every outbox row of these payments."""
    for _ in range(100):
        if not await db.fetchval("SELECT count(*) FROM network_outbox WHERE payment_id = ANY($1::text[]) AND "
                                 "acknowledged_at IS NULL", payment_ids):
            return
        await asyncio.sleep(0.05)


async def _cli(stack, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "switch", "settlement", *args],
                                   capture_output=True, text=True, env={**os.environ, **stack.switch_env()})


async def _ledger_check(stack) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "switch", "ledger", "check"],
                                   capture_output=True, text=True, env={**os.environ, **stack.switch_env()})


async def _line_no(db, file_id: int, rrn: str) -> int:  # type: ignore[no-untyped-def]
    return await db.fetchval("SELECT line_no FROM settlement_lines WHERE file_id = $1 AND rrn = $2", file_id, rrn)


def _report(reports: Path, file_id: int) -> dict[str, Any]:
    return json.loads((reports / f"visa-file{file_id}.json").read_text())


def _one_line_file(path: Path, transaction_date: str, trailer_amount: int) -> Path:
    """A visa file of one capture of 100 (on `transaction_date`) whose trailer says `trailer_amount`."""
    path.write_text(f"{HEADER}\nD,visa,000000000001,000001,T1,A1,capture,100,840,{transaction_date},2030-05-07,2\n"
                    f"T,visa,840,1,{trailer_amount},0,{trailer_amount},2,2030-05-07,2030-05-07T00:00:00Z\n")
    return path


def _later(cut_off: str, seconds: float) -> str:
    moved = datetime.fromisoformat(cut_off.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moved.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _retrail(lines: list[str]) -> list[str]:
    """Trailers rebuilt for tampered detail lines, as the network would have written them."""
    details = [line for line in lines if line.startswith("D,")]
    trailer = next(line for line in lines if line.startswith("T,")).split(",")
    out = [lines[0], *details]
    for currency in sorted({line.split(",")[8] for line in details}):
        amounts = [int(line.split(",")[7]) for line in details if line.split(",")[8] == currency]
        debit, credit = sum(a for a in amounts if a > 0), -sum(a for a in amounts if a < 0)
        fees = sum(int(line.split(",")[11]) for line in details if line.split(",")[8] == currency)
        out.append(",".join(["T", "visa", currency, str(len(amounts)), str(debit), str(credit), str(debit - credit),
                             str(fees), trailer[8], trailer[9]]))
    return out


async def test_a_days_file_matches_and_planted_discrepancies_are_found(stack, shop: Client, db,
                                                                       tmp_path: Path) -> None:
    visa = lambda: luhn_card("4571")  # noqa: E731
    authorized = await _pay(shop, payment(5000, visa(), "manual"))
    captured = await shop.request("POST", f"/v1/payments/{authorized['id']}/capture", {"amount_to_capture": 3000},
                                  idempotency_key=key("st"))
    assert captured.status == 200
    sale = await _pay(shop, payment(2500, visa(), "automatic"))
    refunded_sale = await _pay(shop, payment(4000, visa(), "automatic"))
    refund = await shop.request("POST", "/v1/refunds", {"payment": refunded_sale["id"], "amount": 1000},
                                idempotency_key=key("st"))
    assert refund.status == 200 and refund.json()["status"] == "succeeded"
    voided = await _pay(shop, payment(1500, visa(), "manual"))
    canceled = await shop.request("POST", f"/v1/payments/{voided['id']}/cancel", {}, idempotency_key=key("st"))
    assert canceled.status == 200
    ours = [authorized["id"], sale["id"], refunded_sale["id"], voided["id"]]
    await _until_sent(db, ours)               # the capture advice and the void's reversal reach the network
    rrns = {row["id"]: row["rrn"] for row in await db.fetch("SELECT id, rrn FROM payments WHERE id = ANY($1::text[])",
                                                             ours)}
    refund_rrn = await db.fetchval("SELECT rrn FROM refunds WHERE id = $1", refund.json()["id"])

    files = [Path(name) for name in simulator(stack, "/settlement", {})["files"]]
    day = next(path for path in files if path.name.startswith("visa-"))
    reports = tmp_path / "reports"
    first = await _import(stack, reports, day)
    assert first.returncode in (0, 1), first.stderr
    file_id = await db.fetchval("SELECT id FROM settlement_files WHERE file_name = $1", day.name)
    lines = {row["rrn"]: row["class"] for row in await db.fetch(
        "SELECT l.rrn, m.class FROM settlement_matches m JOIN settlement_lines l USING (file_id, line_no) "
        "WHERE m.file_id = $1", file_id)}
    assert lines[rrns[authorized["id"]]] == "matched"             # the 3,000 captured of 5,000
    assert lines[rrns[sale["id"]]] == lines[rrns[refunded_sale["id"]]] == lines[refund_rrn] == "matched"
    assert rrns[voided["id"]] not in lines                        # voided before the cut-off: not settled
    statuses = {row["id"]: row["status"] for row in await db.fetch(
        "SELECT id, status FROM payments WHERE id = ANY($1::text[])", ours)}
    assert [statuses[i] for i in ours] == ["settled", "settled", "settled", "canceled"]
    assert await db.fetchval("SELECT status FROM refunds WHERE id = $1", refund.json()["id"]) == "settled"
    posted = await db.fetch("SELECT account, amount FROM ledger_entries WHERE posting_id = $1 ORDER BY account",
                            f"settle:{file_id}:{await _line_no(db, file_id, rrns[authorized['id']])}")
    fee = 3000 * 150 // 10_000 + 10                               # visa: 1.5 % + 10 (docs/simulator.md)
    assert [(row["account"], row["amount"]) for row in posted] == [
        ("expense:visa:interchange", fee), ("network:visa:receivable", -3000), ("settlement:visa:bank", 3000 - fee)]
    merchant = await db.fetchval("SELECT merchant_id FROM payments WHERE id = $1", authorized["id"])
    released = await db.fetch("SELECT account, amount FROM ledger_entries WHERE posting_id = $1 ORDER BY account",
                              f"release:{file_id}:{merchant}:usd")
    net = sum(amount - fee_minor(amount) for amount in (3000, 2500, 4000))   # our net of the three settled
    assert [(row["account"], row["amount"]) for row in released] == [
        (f"merchant:{merchant}:available", -net), (f"merchant:{merchant}:payable", net)]
    assert (await _ledger_check(stack)).returncode == 0

    again = await _import(stack, reports, day)
    assert "already imported, unchanged" in again.stdout
    assert await db.fetchval("SELECT count(*) FROM settlement_files WHERE file_name = $1", day.name) == 1

    text = day.read_text().rstrip("\n").split("\n")
    planted: list[str] = []
    for line in text[1:]:
        fields = line.split(",")
        if fields[0] != "D":
            continue
        if fields[2] == rrns[authorized["id"]]:
            fields[7] = "3100"                                      # amount_mismatch
        elif fields[2] == refund_rrn:
            fields[8] = "978"                                       # currency_mismatch
        elif fields[2] == rrns[sale["id"]]:
            planted.append(line)                                    # duplicate_in_file
        planted.append(",".join(fields))
    unknown = planted[-1].split(",")
    unknown[2] = "999999999999"                                     # missing_in_ours
    reversed_ = planted[-1].split(",")
    reversed_[2], reversed_[6], reversed_[7] = rrns[voided["id"]], "capture", "1500"   # settled_after_reversal
    reissue = tmp_path / f"reissue-{day.name}"
    reissue.write_text("\n".join(_retrail([text[0], *planted, ",".join(unknown), ",".join(reversed_),
                                           *[line for line in text if line.startswith("T,")]])) + "\n")
    tampered = await _import(stack, reports, reissue)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"supersedes file {file_id}" in tampered.stdout
    new_id = await db.fetchval("SELECT id FROM settlement_files WHERE file_name = $1", reissue.name)
    assert await db.fetchval("SELECT status FROM settlement_files WHERE id = $1", file_id) == "superseded"
    found = [(line["rrn"], line["class"]) for line in _report(reports, new_id)["lines"]]
    assert sorted(found) == sorted([(rrns[authorized["id"]], "amount_mismatch"), (refund_rrn, "currency_mismatch"),
                                    (rrns[sale["id"]], "duplicate_in_file"), ("999999999999", "missing_in_ours"),
                                    (rrns[voided["id"]], "settled_after_reversal")])
    assert (reports / f"visa-file{new_id}.csv").read_text().startswith("line_no,class,rrn")
    statuses = {row["id"]: row["status"] for row in await db.fetch(
        "SELECT id, status FROM payments WHERE id = ANY($1::text[])", ours)}
    # The re-issue settles again what it matched; the capture it got wrong is unsettled, and so is the refund.
    assert [statuses[i] for i in ours] == ["succeeded", "settled", "settled", "canceled"]
    assert await db.fetchval("SELECT status FROM refunds WHERE id = $1", refund.json()["id"]) == "succeeded"
    checked = await _ledger_check(stack)
    assert checked.returncode == 0, checked.stdout

    # The operator works the exceptions: each resolved once, audited; a write-off settles the capture.
    listed = await _cli(stack, "exceptions", "list", "--network", "visa")
    assert listed.returncode == 1 and "amount_mismatch" in listed.stdout
    capture_line = await _line_no(db, new_id, rrns[authorized["id"]])
    written_off = await _cli(stack, "exceptions", "resolve", "--file", str(new_id), "--line", str(capture_line),
                             "--action", "write_off", "--reason", "network confirmed 3,100 by phone")
    assert written_off.returncode == 0, written_off.stderr
    assert "write_off by cli:" in written_off.stdout
    assert await db.fetchval("SELECT status FROM payments WHERE id = $1", authorized["id"]) == "settled"
    again = await _cli(stack, "exceptions", "resolve", "--file", str(new_id), "--line", str(capture_line),
                       "--action", "acknowledge", "--reason", "twice")
    assert again.returncode == 2 and "resolved already" in again.stderr
    refund_line = await _line_no(db, new_id, refund_rrn)
    wrong = await _cli(stack, "exceptions", "resolve", "--file", str(new_id), "--line", str(refund_line),
                       "--action", "write_off", "--reason", "no")
    assert wrong.returncode == 2 and "amount mismatch" in wrong.stderr
    checked = await _ledger_check(stack)
    assert checked.returncode == 0, checked.stdout


async def test_a_file_that_does_not_add_up_is_refused_whole(stack, db, tmp_path: Path) -> None:
    bad = _one_line_file(tmp_path / "visa-bad.csv", "2030-05-06", trailer_amount=999)
    refused = await _import(stack, tmp_path / "reports", bad)
    assert refused.returncode == 2 and "do not add up" in refused.stderr
    assert await db.fetchval("SELECT count(*) FROM settlement_files WHERE file_name = 'visa-bad.csv'") == 0


async def test_two_imports_of_one_file_at_once_do_the_work_once(stack, shop: Client, db, tmp_path: Path) -> None:
    await _pay(shop, payment(1800, luhn_card("4571"), "automatic"))
    files = simulator(stack, "/settlement", {})["files"]
    day = next(Path(name) for name in files if Path(name).name.startswith("visa-"))
    both = await asyncio.gather(_import(stack, tmp_path, day), _import(stack, tmp_path, day))
    # Exit 1 is "exceptions remain" (other tests' lines); a traceback would be 1 too, so stderr must be empty.
    assert all(run.returncode in (0, 1) and not run.stderr for run in both), [run.stderr[-600:] for run in both]
    assert sum("already imported, unchanged" in run.stdout for run in both) == 1
    assert await db.fetchval("SELECT count(*) FROM settlement_files WHERE file_name = $1", day.name) == 1


PLANTED_CLASS = {"amount": "amount_mismatch", "duplicate": "duplicate_in_file", "unknown": "missing_in_ours",
                 "reversed": "settled_after_reversal", "currency": "currency_mismatch"}


async def test_discrepancies_the_simulator_plants_are_found_as_planted(stack, shop: Client, db,
                                                                       tmp_path: Path) -> None:
    for i in range(6):
        await _pay(shop, payment(1100 + i, luhn_card("4571"), "automatic"))
    voided = await _pay(shop, payment(1700, luhn_card("4571"), "manual"))
    canceled = await shop.request("POST", f"/v1/payments/{voided['id']}/cancel", {}, idempotency_key=key("st"))
    assert canceled.status == 200
    await _until_sent(db, [voided["id"]])
    cut = simulator(stack, "/settlement", {"plant": {kind: 1 for kind in PLANTED_CLASS}, "seed": 7})
    planted = [item for item in cut["planted"] if item["network"] == "visa"]
    assert sorted(item["kind"] for item in planted) == sorted(PLANTED_CLASS)
    day = next(Path(name) for name in cut["files"] if Path(name).name.startswith("visa-"))
    run = await _import(stack, tmp_path, day)
    assert run.returncode == 1, run.stdout + run.stderr
    file_id = await db.fetchval("SELECT id FROM settlement_files WHERE file_name = $1", day.name)
    found = {(line["rrn"], line["class"]) for line in _report(tmp_path, file_id)["lines"]}
    expected = {(item["rrn"], PLANTED_CLASS[item["kind"]]) for item in planted}
    assert expected <= found, (planted, found)
    print("settlement: planted", len(expected), "found", len(found & expected), "other exceptions",
          sorted(found - expected))


async def test_a_line_another_file_settled_already_is_a_duplicate(stack, shop: Client, db, tmp_path: Path) -> None:
    sale = await _pay(shop, payment(2100, luhn_card("4571"), "automatic"))
    rrn = await db.fetchval("SELECT rrn FROM payments WHERE id = $1", sale["id"])
    day = next(Path(name) for name in simulator(stack, "/settlement", {})["files"] if "visa-" in Path(name).name)
    await _import(stack, tmp_path, day)
    assert await db.fetchval("SELECT status FROM payments WHERE id = $1", sale["id"]) == "settled"
    refund = await shop.request("POST", "/v1/refunds", {"payment": sale["id"], "amount": 100}, idempotency_key=key())
    assert refund.status == 200 and refund.json()["status"] == "succeeded"      # settled, still refundable
    assert await db.fetchval("SELECT status FROM payments WHERE id = $1", sale["id"]) == "settled"
    ours = next(line for line in day.read_text().split("\n") if line.startswith("D,") and line.split(",")[2] == rrn)
    trailer = next(line for line in day.read_text().split("\n") if line.startswith("T,")).split(",")
    trailer[9] = _later(trailer[9], seconds=1)                      # another cut-off's file, settling it again
    again = tmp_path / "visa-again.csv"
    again.write_text("\n".join(_retrail([day.read_text().split("\n")[0], ours, ",".join(trailer)])) + "\n")
    run = await _import(stack, tmp_path, again)
    assert run.returncode == 1, run.stdout + run.stderr
    file_id = await db.fetchval("SELECT id FROM settlement_files WHERE file_name = 'visa-again.csv'")
    assert [(line["rrn"], line["class"]) for line in _report(tmp_path, file_id)["lines"]] == [
        (rrn, "duplicate_in_file")]


async def test_a_line_that_does_not_read_refuses_the_file(stack, tmp_path: Path) -> None:
    bad = _one_line_file(tmp_path / "visa-baddate.csv", "2030-13-06", trailer_amount=100)
    refused = await _import(stack, tmp_path / "reports", bad)
    assert refused.returncode == 2 and "line 2: a number or a date that does not read" in refused.stderr


async def test_an_item_the_network_had_and_never_settled_is_missing_in_theirs_after_the_grace(
        stack, shop: Client, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for i in range(4):
        await _pay(shop, payment(1300 + i, luhn_card("4571"), "automatic"))
    held = await _pay(shop, payment(2600, luhn_card("4571"), "manual"))
    captured = await shop.request("POST", f"/v1/payments/{held['id']}/capture", {"amount_to_capture": 2000},
                                  idempotency_key=key("st"))
    assert captured.status == 200
    await _until_sent(db, [held["id"]])
    cut = simulator(stack, "/settlement", {"plant": {"drop": 2}, "seed": 11})
    dropped = {item["rrn"] for item in cut["planted"] if item["network"] == "visa"}
    assert len(dropped) == 2
    first = next(Path(name) for name in cut["files"] if Path(name).name.startswith("visa-"))
    within = await _import(stack, tmp_path, first)                   # the default grace: 2 days
    first_id = await db.fetchval("SELECT id FROM settlement_files WHERE file_name = $1", first.name)
    report = _report(tmp_path, first_id)
    assert "missing_in_theirs" not in report["classes"] and report["awaiting_settlement"] >= 2, within.stdout
    assert "awaiting settlement (within the grace)" in within.stdout

    # The next day's file still does not carry them: now they are exceptions, each once.
    later = next(Path(name) for name in simulator(stack, "/settlement", {})["files"] if "visa-" in Path(name).name)
    argv = [sys.executable, "-m", "switch", "settlement", "import", "--network", "visa", "--reports-dir",
            str(tmp_path), "--missing-after-days", "0", str(later)]
    run = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                  env={**os.environ, **stack.switch_env()})
    assert run.returncode == 1, run.stdout + run.stderr
    later_id = await db.fetchval("SELECT id FROM settlement_files WHERE file_name = $1", later.name)
    missing = {line["rrn"] for line in _report(tmp_path, later_id)["lines"] if line["class"] == "missing_in_theirs"}
    assert dropped <= missing, (dropped, missing)
    again = await asyncio.to_thread(subprocess.run, argv[:-1] + [str(first)], capture_output=True, text=True,
                                    env={**os.environ, **stack.switch_env()})
    assert "already imported" in again.stdout                      # nothing reported twice
    assert await db.fetchval("SELECT count(*) FROM settlement_matches WHERE class = 'missing_in_theirs' AND "
                             "payment_id = ANY(SELECT id FROM payments WHERE rrn = ANY($1::text[]))",
                             list(dropped)) == 2

    # The network settles one late: it matches, and its exception resolves itself.
    rrn = sorted(dropped)[0]
    row = await db.fetchrow("SELECT id, amount_received, capture_method FROM payments WHERE rrn = $1", rrn)
    kind = "sale" if row["capture_method"] == "automatic" else "capture"
    header = first.read_text().split("\n")[0]
    trailer = next(line for line in later.read_text().split("\n") if line.startswith("T,")).split(",")
    trailer[9] = _later(trailer[9], seconds=1)
    late = tmp_path / "visa-late.csv"
    late.write_text("\n".join(_retrail([header, f"D,visa,{rrn},000001,T1,A1,{kind},{row['amount_received']},840,"
                                                f"{trailer[8]},{trailer[8]},5", ",".join(trailer)])) + "\n")
    settled_late = await _import(stack, tmp_path, late)
    assert settled_late.returncode in (0, 1), settled_late.stderr
    assert await db.fetchval("SELECT status FROM payments WHERE id = $1", row["id"]) == "settled"
    resolved = await db.fetchrow("SELECT r.actor, r.reason FROM settlement_resolutions r JOIN settlement_matches m "
                                 "USING (file_id, line_no) WHERE m.payment_id = $1", row["id"])
    assert resolved["actor"] == "switch" and resolved["reason"].startswith("settled late")
    assert (await _ledger_check(stack)).returncode == 0

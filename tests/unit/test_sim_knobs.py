"""The simulator's knobs, settlement arithmetic and memory caps, without sockets."""

import random
import statistics
from datetime import UTC, datetime
from datetime import time as time_of_day

import pytest

from acquirer_sim.behaviour import PERFECT, Behaviour, BehaviourError, Faults, behaviour_from
from acquirer_sim.issuer import Issuer
from acquirer_sim.server import Records
from acquirer_sim.settlement import FEES, Fee, Settlement, parse_daily_at, render, seconds_until
from switch.iso import PROFILES
from switch.iso.framing import FramingError, framing_for
from switch.iso.messages import IsoError, decode


def faults(**fields) -> Faults:
    return Faults(behaviour_from(fields), random.Random(42))


def test_a_perfect_network_is_not_active_and_any_knob_makes_it_so():
    assert Faults().active is False
    assert faults(duplicate_rate=0.1).active is True
    assert PERFECT.changed({"latency_ms": 0}) == PERFECT


def test_changes_validate_as_a_whole_and_leave_the_old_behaviour_alone():
    slow = PERFECT.changed({"latency_distribution": "lognormal", "latency_ms": 20, "latency_sigma": 1.0})
    with pytest.raises(BehaviourError, match="latency_sigma is for latency_distribution lognormal"):
        slow.changed({"latency_distribution": "normal"})
    assert slow.latency_distribution == "lognormal"
    with pytest.raises(BehaviourError, match="behaviour must be a JSON object"):
        behaviour_from([1])


def test_fixed_latency():
    assert faults(latency_ms=250).latency_s() == 0.25


def test_normal_latency_has_its_mean_and_never_goes_negative():
    sampler = faults(latency_distribution="normal", latency_ms=100, latency_stddev_ms=20)
    draws = [sampler.latency_s() for _ in range(5000)]
    assert 0.095 < statistics.fmean(draws) < 0.105
    assert 0.018 < statistics.pstdev(draws) < 0.022
    wide = faults(latency_distribution="normal", latency_ms=1, latency_stddev_ms=100)
    assert min(wide.latency_s() for _ in range(1000)) == 0.0


def test_lognormal_has_a_long_tail():
    sampler = faults(latency_distribution="lognormal", latency_ms=10, latency_sigma=1.0)
    draws = sorted(sampler.latency_s() for _ in range(10_000))
    median, p99 = draws[5000], draws[9900]
    assert 0.009 < median < 0.011
    assert p99 > 8 * median  # exp(2.33 * sigma) ≈ 10x the median.


def test_spike_adds_to_a_share_of_answers():
    sampler = faults(latency_ms=5, latency_spike_rate=0.01, latency_spike_ms=2000)
    draws = [sampler.latency_s() for _ in range(20_000)]
    spiked = sum(1 for draw in draws if draw > 1.0)
    assert 100 < spiked < 300 and set(draws) == {0.005, 2.005}


def test_fault_draws_follow_the_rates():
    sampler = faults(error_rate=0.25, duplicate_rate=1.0)
    errors = sum(1 for _ in range(4000) if sampler.error_code() == "96")
    assert 900 < errors < 1100
    assert {sampler.after_decision() for _ in range(100)} == {"duplicate"}
    assert faults(drop_rate=1.0, duplicate_rate=1.0).after_decision() == "never_answer"  # First hit wins.


@pytest.mark.parametrize("name", list(PROFILES))
def test_garbage_never_decodes_and_unframed_garbage_breaks_framing(name):
    framing = framing_for(PROFILES[name])
    sampler = faults(garbage_rate=1.0)
    for _ in range(200):
        [payload] = framing.reader().feed(sampler.garbage(framing, framed=True))
        with pytest.raises(IsoError):
            decode(PROFILES[name], payload)
        with pytest.raises(FramingError):
            framing.reader().feed(sampler.garbage(framing, framed=False))


def test_fees_round_half_up_and_the_schedule_is_documented():
    assert Fee(150, 10).on(10_000) == 160
    assert Fee(150, 10).on(33) == 10  # 0.495 rounds down.
    assert Fee(150, 10).on(100) == 12  # 1.5 rounds up.
    assert dict(FEES) == {"visa": Fee(150, 10), "mastercard": Fee(175, 12), "generic": Fee(200, 0)}


def test_an_empty_settlement_file_has_a_header_and_a_zero_trailer():
    text = render("visa", [], datetime(2030, 5, 6, 23, 59, 59, tzinfo=UTC))
    assert text.splitlines() == [
        "record_type,network,rrn,stan,terminal_id,auth_code,transaction_type,amount_minor,currency,"
        "transaction_date,settlement_date,interchange_fee_minor",
        "T,visa,,0,0,0,0,0,2030-05-06,2030-05-06T23:59:59.000Z",
    ]


def test_cut_off_takes_each_cleared_amount_once(tmp_path):
    issuer = Issuer(clock=lambda: 1_900_000_000.0)
    issuer.sale(pan="4242424242424242", amount_minor=500, terminal_id="T", stan="000001", transmission_dt="0506070809",
                rrn="R1", network="visa", currency="840")  # fmt: skip
    settlement = Settlement(issuer, ["visa", "mastercard"], tmp_path)
    first = settlement.take(datetime(2030, 3, 17, tzinfo=UTC))
    assert [(row.transaction_type, row.amount_minor, row.interchange_fee_minor, row.transaction_date)
            for row in first.rows["visa"]] == [("sale", 500, 18, "2030-03-17")]  # fmt: skip
    assert first.rows["mastercard"] == []
    assert settlement.take().rows == {"visa": [], "mastercard": []}


def test_daily_cut_off_time():
    assert parse_daily_at("23:30") == time_of_day(23, 30)
    assert parse_daily_at("off") is None
    with pytest.raises(ValueError):
        parse_daily_at("25:00")
    now = datetime(2030, 1, 1, 23, 0, tzinfo=UTC)
    assert seconds_until(time_of_day(23, 30), now) == 1800
    assert seconds_until(time_of_day(22, 0), now) == 23 * 3600


def test_records_are_capped_at_records_max():
    records = Records(records_max=3)
    for n in range(10):
        records.add({"rrn": str(n)})
    assert [record["rrn"] for record in records.query(limit=100)] == ["9", "8", "7"]
    assert records.query(limit=100)[0]["seq"] == 10


def test_unsettled_items_are_capped_and_the_overflow_counted():
    issuer = Issuer(unsettled_max=2)
    for n in range(5):
        issuer.sale(pan="4242424242424242", amount_minor=100, terminal_id="T", stan=f"{n:06d}",
                    transmission_dt="0506070809", rrn=f"R{n}", network="visa")  # fmt: skip
    assert [txn.rrn for _, txn, _ in issuer.take_unsettled()] == ["R3", "R4"]
    assert issuer.unsettled_dropped == 3


def test_behaviour_struct_is_frozen():
    with pytest.raises(AttributeError):
        Behaviour().latency_ms = 5  # type: ignore[misc]

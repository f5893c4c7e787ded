"""`make locust`'s reading of Locust's CSV reports and of the locustfile's shape (loadtest/locust_run.py)."""

from __future__ import annotations

import pytest

from loadtest.locust_run import LOCUSTFILE, parse_stats, shape_stages, stage_rates

STATS = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,/v1/payments,1000,7,12,15.2,1.1,900.0,600.0,55.5,0.4,12,14,16,18,25,40,80,120,600,900,900
POST,/v1/payments [card],30,1,20,22.0,5.0,80.0,600.0,1.6,0.05,20,21,22,23,30,50,70,80,80,80,80
GET,/v1/payments/{id},90,0,3,4.0,0.5,20.0,500.0,5.0,0.0,3,3,4,4,6,9,15,18,20,20,20
,Aggregated,1120,8,11,14.9,0.5,900.0,590.0,62.1,0.45,11,13,15,17,24,38,75,110,600,900,900
"""

HISTORY_HEADER = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
                  "99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,"
                  "Total Average Response Time,Total Min Response Time,Total Max Response Time,"
                  "Total Average Content Size\n")


def history(rows: list[tuple[int, int, int, int]]) -> list[str]:
    """(timestamp, users, total requests, total failures) as Locust writes them, one Aggregated row each."""
    lines = [HISTORY_HEADER]
    for timestamp, users, requests, failures in rows:
        lines.append(f"{timestamp},{users},,Aggregated,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,"
                     f"{requests},{failures},0,0.0,0,0,0\n")
    return lines


def test_stats_give_the_aggregate_and_the_successful_payments() -> None:
    summary = parse_stats(STATS.splitlines(keepends=True))
    agg = summary.aggregated
    assert (agg.requests, agg.failures, agg.p50_ms, agg.p95_ms, agg.p99_ms) == (1120, 8, 11, 38, 110)
    assert agg.rps == pytest.approx(62.1)
    assert [row.name for row in summary.rows] == ["/v1/payments", "/v1/payments [card]", "/v1/payments/{id}"]
    # Both POSTs, less their failures; the GETs that read a payment back are not payments.
    assert summary.payments_ok == (1000 - 7) + (30 - 1)


def test_stats_without_requests_read_as_zero_latency() -> None:
    empty = STATS.splitlines(keepends=True)[0] + ",Aggregated,0,0,0,0,0,0,0,0.0,0.0," + ",".join(["N/A"] * 11) + "\n"
    summary = parse_stats(empty.splitlines(keepends=True))
    assert summary.aggregated.requests == 0 and summary.aggregated.p99_ms == 0.0 and summary.payments_ok == 0


def test_stats_without_an_aggregated_row_are_refused() -> None:
    with pytest.raises(ValueError, match="Aggregated"):
        parse_stats(STATS.splitlines(keepends=True)[:2])


def test_stage_rates_split_the_running_totals_at_the_scaled_stage_ends() -> None:
    stages = [(10.0, 20, 5.0), (20.0, 100, 10.0), (40.0, 10, 10.0)]
    # Scale 0.5: stages end at 5 s, 10 s, then the last runs to the last row (22 s).
    rows = [(1000, 0, 0, 0), (1003, 8, 30, 0), (1005, 10, 50, 1), (1008, 40, 200, 1), (1010, 50, 300, 3),
            (1016, 20, 700, 3), (1022, 5, 1000, 4)]
    rates = stage_rates(history(rows), stages, 0.5)
    assert [(r.start_s, r.end_s, r.users, r.users_end, r.requests, r.failures) for r in rates] == [
        (0.0, 5.0, 10, 10, 50, 1), (5.0, 10.0, 50, 50, 250, 2), (10.0, 22.0, 5, 5, 700, 1)]
    assert [r.rps for r in rates] == [10.0, 50.0, pytest.approx(700 / 12)]
    assert sum(r.requests for r in rates) == 1000


def test_stage_rates_of_a_run_cut_short_leave_the_later_stages_empty() -> None:
    stages = [(10.0, 20, 5.0), (20.0, 100, 10.0), (40.0, 10, 10.0)]
    rates = stage_rates(history([(500, 1, 0, 0), (504, 5, 40, 0), (507, 9, 90, 2)]), stages, 1.0)
    assert [(r.requests, r.failures) for r in rates] == [(90, 2), (0, 0), (0, 0)]
    assert rates[2].rps == 0.0


def test_no_history_rows_give_no_stages() -> None:
    assert stage_rates(history([]), [(10.0, 1, 1.0)], 1.0) == []


def test_the_shape_is_read_from_the_locustfile() -> None:
    stages = shape_stages(LOCUSTFILE.read_text())
    assert stages[0] == (30.0, 20, 5.0) and stages[-1][0] == 300.0
    assert all(later[0] > earlier[0] for earlier, later in zip(stages, stages[1:], strict=False))
    with pytest.raises(ValueError):
        shape_stages("class Other:\n    stages = [(1, 2, 3)]\n")

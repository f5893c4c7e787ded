"""The bench's --statements report: pg_stat_statements counters differenced over the measured run."""

from loadtest.statements import Statement, TableWrites, Writes, difference, report, writes_report


def test_only_what_ran_in_between_counts_most_time_first() -> None:
    before = {(1, 100): Statement(10, 50.0, 10, "SELECT 1"), (1, 200): Statement(5, 5.0, 5, "SELECT 2")}
    after = {(1, 100): Statement(30, 90.0, 30, "SELECT 1"), (1, 200): Statement(5, 5.0, 5, "SELECT 2"),
             (2, 300): Statement(4, 120.0, 4, "INSERT  INTO\n t VALUES ($1)")}
    ran = difference(before, after)
    assert ran == [Statement(4, 120.0, 4, "INSERT  INTO\n t VALUES ($1)"), Statement(20, 40.0, 20, "SELECT 1")]
    lines = report(ran, payments=100)
    assert lines[0].startswith("Postgres statements during the run: 2 kinds, 24 calls, 0.2 s executing (1600 µs")
    assert lines[2].split() == ["0.04", "30000", "1200", "75.0%", "INSERT", "INTO", "t", "VALUES", "($1)"]
    assert lines[3].split()[:4] == ["0.20", "2000", "400", "25.0%"]


def test_planning_shows_the_statements_planned_most() -> None:
    ran = [Statement(1000, 30.0, 1000, "SELECT card", plans=900, plan_ms=72.0),
           Statement(500, 300.0, 500, "UPDATE pay", plans=4, plan_ms=0.8),
           Statement(10, 1.0, 10, "SELECT never planned here")]
    lines = report(ran, payments=100)
    start = lines.index(next(line for line in lines if line.startswith("Planning:")))
    assert lines[start] == "Planning: 904 plans, 0.1 s (728 µs per payment)"
    assert lines[start + 2].split() == ["900", "1,000", "80", "720", "SELECT", "card"]
    assert lines[start + 3].split() == ["4", "500", "200", "8", "UPDATE", "pay"]
    assert len(lines) == start + 4


def test_writes_show_wal_and_rows_a_payment_with_the_hot_share() -> None:
    before = Writes(wal_bytes=1024, wal_records=10, wal_fpi=0,
                    tables={"public.payments": TableWrites(100, 50, 10, 0), "public.idle": TableWrites(5, 5, 5, 5)})
    after = Writes(wal_bytes=1024 + 100 * 2048, wal_records=510, wal_fpi=25,
                   tables={"public.payments": TableWrites(200, 150, 35, 0), "public.idle": TableWrites(5, 5, 5, 5),
                           "vault.tokens": TableWrites(300, 0, 0, 0)})
    lines = writes_report(before, after, payments=100)
    assert lines[0] == "Writes during the run: WAL 2.0 KB a payment, 5.0 records, 0.25 full-page images"
    assert lines[2].split() == ["3.00", "0.00", "-", "0.00", "vault.tokens"]
    assert lines[3].split() == ["1.00", "1.00", "25%", "0.00", "public.payments"]
    assert len(lines) == 4

"""The bench's --statements report: pg_stat_statements counters differenced over the measured run."""

from loadtest.statements import Statement, difference, report


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

"""make bench-pair: a bench's output read back as figures, and the pairs' differences summed up."""

from loadtest.pair import Run, differences, parse, summary

OUTPUT = """starting the stack ...
CPU seconds during the run (and µs per payment):
  postgres         12.15 s       1273 µs/payment
  switch           11.63 s       1218 µs/payment
  vault             2.27 s        238 µs/payment
  redis             0.38 s         40 µs/payment
  total            29.72 s       3113 µs/payment (of 2 cores x 15.2 s = 30.4 s)
per 10 s:
      0-10    s      649 payments/s  p99   318.2 ms  errors/s   0.0  CPU  3,016 µs/payment
RESULT payments_per_s=628 p50_ms=160.3 p99_ms=305.3 errors=2
"""


def test_a_finished_bench_is_read_back() -> None:
    run = parse(OUTPUT)
    assert run == Run(628, 2, {"postgres": 1273, "switch": 1218, "vault": 238, "redis": 40, "total": 3113})


def test_a_bench_without_its_result_line_did_not_finish() -> None:
    assert parse(OUTPUT.replace("RESULT", "Traceback")) is None


def _run(rate: int, switch: int, total: int) -> Run:
    return Run(rate, 0, {"switch": switch, "total": total})


def test_the_summary_is_the_median_of_each_pairs_difference() -> None:
    pairs = [(_run(500, 700, 2000), _run(480, 760, 2100)),
             (_run(450, 800, 2200), _run(440, 810, 2150)),
             (_run(520, 650, 1900), _run(500, 720, 2000))]
    assert differences(pairs, "switch") == [60, 10, 70]
    lines = summary(pairs, "abc", "def")
    assert lines[0] == "pair 1: payments/s 500 / 480, µs per payment switch 700 / 760, total 2000 / 2100"
    switch_line = next(line for line in lines if line.strip().startswith("switch "))
    assert switch_line.split()[:5] == ["switch", "700", "/", "760", "difference"]
    assert "+60" in switch_line and "(pairs: +60 +10 +70)" in switch_line
    assert lines[-1] == ("PAIR pairs=3 base=abc change=def payments_per_s=500/480 switch_us=700/760 "
                         "switch_diff_us=+60 total_diff_us=+100")

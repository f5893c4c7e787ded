"""The bench's --profile summary of py-spy's collapsed stacks."""

from loadtest.profile import summary

STACKS = """process 10:"python -m switch worker";<module> (switch/__main__.py:3);run (asyncio/runners.py:118);\
handle (switch/frontends/http/app.py:90);encode (msgspec/json.py:1) 25
process 10:"python -m switch worker";<module> (switch/__main__.py:3);run (asyncio/runners.py:118);\
handle (switch/frontends/http/app.py:95);decode (switch/frontends/http/schema.py:40) 45
process 10:"python -m switch worker";<module> (switch/__main__.py:3);run (asyncio/runners.py:118) 25
process 11:"python -m switch worker";<module> (switch/__main__.py:3);flush (switch/store/writer.py:200) 5
not a stack line
"""


def test_self_and_total_shares_by_function_lines_apart() -> None:
    lines = summary("switch", STACKS)
    assert lines[0] == "switch: 100 samples; self / total % of them:"
    assert lines[1:4] == ["  self   45.0 %  decode (schema.py)", "  self   25.0 %  encode (json.py)",
                          "  self   25.0 %  run (runners.py)"]
    totals = [line for line in lines if line.startswith("  total")]
    # handle() is one function at two lines; <module> (100 %) and run() (95 %) are left out as scaffolding.
    assert totals[0] == "  total  70.0 %  handle (app.py)"
    assert not any("<module>" in line or "run (runners.py)" in line for line in totals)


def test_no_samples() -> None:
    assert summary("vault", "") == ["vault: no samples"]

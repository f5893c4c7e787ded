"""Circuit breaker: pure logic on a fake clock."""

import pytest

from switch.network.breaker import BreakerConfig, BreakerState, CircuitBreaker, Outcome


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


CONFIG = BreakerConfig(window_s=10.0, window_buckets=10, volume_min=10, error_rate_max=0.5,
                       failures_consecutive_max=4, cool_down_s=5.0, trials_max=2, trial_successes_required=2)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[BreakerState, BreakerState]]:
    return []


@pytest.fixture
def breaker(clock, changes) -> CircuitBreaker:
    return CircuitBreaker(CONFIG, clock=clock, on_change=lambda old, new: changes.append((old, new)))


def send(breaker: CircuitBreaker, outcome: Outcome) -> None:
    permit = breaker.acquire()
    assert permit is not None
    breaker.record(permit, outcome)


def open_it(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.failures_consecutive_max):
        send(breaker, Outcome.TIMEOUT)
    assert breaker.state is BreakerState.OPEN


def test_starts_closed_and_lets_everything_through(breaker):
    assert breaker.state is BreakerState.CLOSED and breaker.available()
    for _ in range(100):
        send(breaker, Outcome.SUCCESS)
    assert breaker.state is BreakerState.CLOSED and breaker.transitions == 0


def test_consecutive_timeouts_open_it(breaker, changes):
    for _ in range(CONFIG.failures_consecutive_max - 1):
        send(breaker, Outcome.TIMEOUT)
    assert breaker.state is BreakerState.CLOSED
    send(breaker, Outcome.TIMEOUT)
    assert breaker.state is BreakerState.OPEN
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert breaker.acquire() is None and not breaker.available()


def test_a_success_resets_the_consecutive_count(breaker):
    for _ in range(5):
        for _ in range(CONFIG.failures_consecutive_max - 1):
            send(breaker, Outcome.TIMEOUT)
        for _ in range(7):
            send(breaker, Outcome.SUCCESS)
    # 15 of 50 failed: under the error rate, and never 4 in a row.
    assert breaker.state is BreakerState.CLOSED
    for _ in range(CONFIG.failures_consecutive_max):
        send(breaker, Outcome.TIMEOUT)
    assert breaker.state is BreakerState.OPEN


def test_error_rate_needs_the_minimum_volume(breaker, clock):
    # Alternate so the consecutive rule never fires: 50% errors, but under volume_min outcomes.
    for _ in range((CONFIG.volume_min - 2) // 2):
        send(breaker, Outcome.SUCCESS)
        send(breaker, Outcome.FAILURE)
    assert breaker.state is BreakerState.CLOSED
    send(breaker, Outcome.SUCCESS)
    send(breaker, Outcome.FAILURE)
    assert breaker.state is BreakerState.OPEN


def test_error_rate_below_threshold_stays_closed(breaker):
    for _ in range(50):
        send(breaker, Outcome.SUCCESS)
        send(breaker, Outcome.SUCCESS)
        send(breaker, Outcome.FAILURE)
    assert breaker.state is BreakerState.CLOSED


def test_old_outcomes_slide_out_of_the_window(breaker, clock):
    for _ in range(CONFIG.volume_min // 2 - 1):
        send(breaker, Outcome.FAILURE)
        send(breaker, Outcome.SUCCESS)
    clock.advance(CONFIG.window_s + 1)  # Everything above has left the window.
    send(breaker, Outcome.FAILURE)
    send(breaker, Outcome.SUCCESS)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["window_total"] == 2


def test_not_sent_says_nothing(breaker):
    for _ in range(100):
        send(breaker, Outcome.NOT_SENT)
    assert breaker.state is BreakerState.CLOSED and breaker.snapshot()["window_total"] == 0


def test_cool_down_then_half_open_with_bounded_trials(breaker, clock, changes):
    open_it(breaker)
    clock.advance(CONFIG.cool_down_s - 0.1)
    assert breaker.acquire() is None
    clock.advance(0.2)
    assert breaker.available()
    first = breaker.acquire()
    assert first is not None and first.trial and breaker.state is BreakerState.HALF_OPEN
    second = breaker.acquire()
    assert second is not None and second.trial
    assert breaker.acquire() is None  # trials_max in flight.
    breaker.record(first, Outcome.SUCCESS)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record(second, Outcome.SUCCESS)
    assert breaker.state is BreakerState.CLOSED
    assert [new for _, new in changes] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_trial_failure_reopens_for_another_cool_down(breaker, clock):
    open_it(breaker)
    clock.advance(CONFIG.cool_down_s)
    permit = breaker.acquire()
    assert permit is not None
    breaker.record(permit, Outcome.TIMEOUT)
    assert breaker.state is BreakerState.OPEN and breaker.acquire() is None
    clock.advance(CONFIG.cool_down_s)
    assert breaker.acquire() is not None and breaker.state is BreakerState.HALF_OPEN


def test_trial_not_sent_gives_the_slot_back(breaker, clock):
    open_it(breaker)
    clock.advance(CONFIG.cool_down_s)
    permits = [breaker.acquire(), breaker.acquire()]
    assert None not in permits and breaker.acquire() is None
    breaker.record(permits[0], Outcome.NOT_SENT)
    assert breaker.acquire() is not None
    assert breaker.state is BreakerState.HALF_OPEN


def test_outcomes_from_an_earlier_state_are_ignored(breaker, clock):
    slow = breaker.acquire()  # Issued while closed.
    assert slow is not None
    open_it(breaker)
    clock.advance(CONFIG.cool_down_s)
    trial = breaker.acquire()
    assert trial is not None
    breaker.record(slow, Outcome.TIMEOUT)  # Must not reopen the half-open breaker.
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record(trial, Outcome.SUCCESS)
    breaker.record(breaker.acquire(), Outcome.SUCCESS)
    assert breaker.state is BreakerState.CLOSED


def test_after_closing_the_window_starts_fresh(breaker, clock):
    open_it(breaker)
    clock.advance(CONFIG.cool_down_s)
    for _ in range(CONFIG.trial_successes_required):
        send(breaker, Outcome.SUCCESS)
    assert breaker.state is BreakerState.CLOSED
    for _ in range(CONFIG.failures_consecutive_max - 1):
        send(breaker, Outcome.TIMEOUT)
    assert breaker.state is BreakerState.CLOSED


def test_connect_failures_count_while_closed_only(breaker, clock):
    for _ in range(CONFIG.failures_consecutive_max):
        breaker.record_connect_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(CONFIG.cool_down_s)
    permit = breaker.acquire()
    assert permit is not None
    breaker.record_connect_failure()  # A half-open breaker is judged by its trials.
    assert breaker.state is BreakerState.HALF_OPEN


def test_state_labels():
    assert [state.label for state in BreakerState] == ["closed", "half-open", "open"]

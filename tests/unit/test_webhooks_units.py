"""Webhook pieces without the stack: signatures equal the Standard Webhooks reference library's; the
retry schedule (an injected clock and jitter) and its three-day end; the SSRF guard, by literal address
and by a name that resolves to loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from switch.frontends.webhooks import client, cursors, signing
from switch.frontends.webhooks.delivery import RETRY_FOR_S, RETRY_SCHEDULE_S, next_attempt


def test_signatures_match_the_reference_library() -> None:
    secret = signing.new_secret()
    body = b'{"id":"evt_0000000000000001","type":"payment.succeeded"}'
    now = int(datetime.now(UTC).timestamp())
    ours = signing.sign(secret, "evt_0000000000000001", now, body)
    theirs = Webhook(secret).sign("evt_0000000000000001", datetime.fromtimestamp(now, UTC), body.decode())
    assert ours == theirs
    headers = dict(signing.headers(secret, "evt_0000000000000001", now, body))
    assert Webhook(secret).verify(body, headers)["type"] == "payment.succeeded"


def test_the_retry_schedule_backs_off_with_jitter_and_ends_after_three_days() -> None:
    queued = datetime(2026, 12, 1, tzinfo=UTC)
    middle = lambda: 0.5  # noqa: E731 - no jitter
    waits = []
    now, attempts = queued, 0
    while (due := next_attempt(attempts, queued, now, jitter=middle)) is not None:
        waits.append((due - now).total_seconds())
        now, attempts = due, attempts + 1
    assert waits[:7] == [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
    assert (now - queued).total_seconds() <= RETRY_FOR_S < (now - queued).total_seconds() + RETRY_SCHEDULE_S[-1]
    assert len(waits) == 11                                        # 3 days: 5 s ... then 10 h apart
    low = next_attempt(0, queued, queued, jitter=lambda: 0.0)
    high = next_attempt(0, queued, queued, jitter=lambda: 0.999)
    assert low == queued + timedelta(seconds=4) and high is not None and high > queued + timedelta(seconds=5.99)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254",
                                     "fd00::1", "fe80::1", "0.0.0.0", "224.0.0.1", "::ffff:127.0.0.1", "100.64.0.1"])
def test_addresses_in_refused_ranges_are_refused(address: str) -> None:
    with pytest.raises(client.RefusedDestination):
        client.check_address(address, allow_loopback=False)


def test_loopback_only_when_allowed_and_public_addresses_pass() -> None:
    client.check_address("127.0.0.1", allow_loopback=True)
    client.check_address("8.8.8.8", allow_loopback=False)
    with pytest.raises(client.RefusedDestination):
        client.check_address("10.0.0.1", allow_loopback=True)       # private stays refused


async def test_a_name_that_resolves_to_loopback_is_refused_at_connect_time() -> None:
    answer = await client.post("http://localhost:9/hook", b"{}", [], allow_loopback=False, timeout_s=2.0)
    assert answer.status is None and answer.error is not None and answer.error.startswith("refused")


def _events(*positions: tuple[int, int]) -> list[dict[str, int]]:
    return [{"xid": xid, "event_id": event_id} for xid, event_id in positions]


def test_a_cursor_moves_past_a_full_batch_only_once_every_attempt_of_it_is_recorded() -> None:
    state = cursors.CursorState({"cursor_xid": 100, "cursor_event_id": 0})  # type: ignore[arg-type]
    batch, moved = state.start_batch(_events((100, 7), (101, 5), (101, 9)), 3, horizon=140)  # type: ignore[arg-type]
    assert batch is not None and moved is None and not state.idle
    assert state.read_to == (101, 9)              # full: the next read starts after the last event read
    assert state.settled(batch) is None and state.settled(batch) is None
    assert state.settled(batch) == (101, 9)
    assert state.idle and state.position == (101, 9)


def test_a_second_batch_is_read_while_the_first_is_in_flight_and_the_cursor_waits_for_the_first() -> None:
    state = cursors.CursorState({"cursor_xid": 100, "cursor_event_id": 0})  # type: ignore[arg-type]
    first, _ = state.start_batch(_events((100, 1), (100, 2)), 2, horizon=150)  # type: ignore[arg-type]
    assert state.wants_more(0.0)
    second, _ = state.start_batch(_events((100, 3)), 2, horizon=150)  # type: ignore[arg-type]
    assert first is not None and second is not None and not state.wants_more(9.0)   # two in flight at most
    assert state.settled(second) is None          # the later batch done first: the cursor does not move
    assert state.settled(first) is None
    assert state.settled(first) == (150, 0)       # both done: past the second (short: to the horizon)


def test_a_cursor_past_a_short_batch_goes_to_the_horizon_and_never_back() -> None:
    state = cursors.CursorState({"cursor_xid": 100, "cursor_event_id": 4})  # type: ignore[arg-type]
    batch, _ = state.start_batch(_events((100, 7)), 16, horizon=120)  # type: ignore[arg-type]
    assert batch is not None and state.settled(batch) == (120, 0)   # every older transaction's event read
    assert state.start_batch([], 16, horizon=130) == (None, (130, 0))   # nothing subscribed to: at once
    assert state.start_batch([], 16, horizon=125) == (None, None)       # an older horizon moves nothing
    assert state.position == (130, 0)


def test_a_caught_up_cursor_is_read_again_only_after_a_pause() -> None:
    state = cursors.CursorState({"cursor_xid": 100, "cursor_event_id": 0})  # type: ignore[arg-type]
    batch, _ = state.start_batch(_events((100, 1)), 16, horizon=120, now=50.0)  # type: ignore[arg-type]
    assert batch is not None and state.settled(batch) == (120, 0)
    assert not state.wants_more(50.05)            # less than a batch was waiting: no read each pass
    assert state.wants_more(50.0 + cursors.CursorState.CAUGHT_UP_READ_S)
    state.start_batch(_events(*((120, n) for n in range(16))), 16, horizon=130, now=60.0)  # type: ignore[arg-type]
    assert state.wants_more(60.0)                 # a full batch: more may wait, read on at once

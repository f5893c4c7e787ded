"""Random text (all of Unicode: NUL, lone surrogates, control characters, CR/LF) in every text field of
every endpoint, while another merchant pays: never a 500, and the other merchant never fails."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.helpers import key, payment

pytestmark = pytest.mark.integration

TEXT = st.text(st.characters(codec=None), max_size=40) | st.sampled_from(["\u0000", "a\u0000b", "\r\n", "\ud800",
                                                                          "\x1b[31m", "tok_" + "A" * 22])
ANSWERS = {200, 400, 402, 404}


class Http:
    def __init__(self, url: str, api_key: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=15)
        self.api_key = api_key

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": key("fuzz")}
        payload = json.dumps(body).encode() if body is not None else None   # lone surrogates as \\udxxx
        if payload is not None:
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()


def _requests(text: str, other: str, payment_id: str) -> list[tuple[str, str, object | None]]:
    quoted = urllib.parse.quote(text, safe="", errors="surrogatepass")
    return [
        ("POST", "/v1/payments", payment(100, description=text)),
        ("POST", "/v1/payments", payment(100, statement_descriptor=text)),
        ("POST", "/v1/payments", payment(100, metadata={text or "k": text})),
        ("POST", "/v1/payments", {**payment(100), "currency": text}),
        ("POST", "/v1/payments", {**payment(100), "capture_method": text}),
        ("POST", "/v1/payments", {**payment(100), "payment_method": text}),
        ("POST", "/v1/refunds", {"payment": text}),
        ("POST", "/v1/refunds", {"payment": payment_id, "reason": text}),
        ("POST", f"/v1/payments/{payment_id}/cancel", {"cancellation_reason": text}),
        ("POST", f"/v1/payments/{payment_id}/capture", {"amount_to_capture": other}),
        ("GET", f"/v1/payments/{quoted}", None),
        ("GET", f"/v1/payments?starting_after={quoted}&limit={quoted}", None),
    ]


def test_random_text_everywhere_never_fails_anyone(stack) -> None:
    neighbour = Http(stack.switch_url, stack.seed_merchant("fuzz-neighbour"))
    fuzzer = Http(stack.switch_url, stack.api_key)
    status, body = fuzzer.call("POST", "/v1/payments", payment(100))
    assert status == 200
    payment_id = json.loads(body)["id"]
    stop = threading.Event()
    neighbour_statuses: list[int] = []

    def neighbour_pays() -> None:
        while not stop.is_set() and len(neighbour_statuses) < 2000:
            neighbour_statuses.append(neighbour.call("POST", "/v1/payments", payment(100 + len(neighbour_statuses)))[0])

    thread = threading.Thread(target=neighbour_pays, daemon=True)
    thread.start()
    seen: dict[int, int] = {}

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(TEXT, TEXT)
    def fuzz(text: str, other: str) -> None:
        for method, path, request_body in _requests(text, other, payment_id):
            status, answer = fuzzer.call(method, path, request_body)
            seen[status] = seen.get(status, 0) + 1
            assert status in ANSWERS, (status, method, path, answer[:300])
            if status >= 400:
                assert b'"request_id"' in answer

    try:
        fuzz()
    finally:
        stop.set()
        thread.join(timeout=30)
    print("fuzz answers:", seen, "neighbour answers:", len(neighbour_statuses))
    assert neighbour_statuses and set(neighbour_statuses) == {200}

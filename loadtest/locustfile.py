"""Locust load test with a Black-Friday shape: warm-up, ramp, spike, plateau, decay.

    SWITCH_RATE_LIMIT_ADDRESS_PER_S=100000 make up          # prints READY url=... (the load comes from one address)
    # a merchant of its own, far above the default 100 requests/s per key (env from the stack's run dir):
    .venv/bin/switch merchants create --name locust --per-s 100000 --quiet
    SWITCH_API_KEY=sk_test_... .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:PORT \\
        --headless

Users pay with a vault token (created by their first payment) and read the payment back now and then.
The shape ends by itself after `TOTAL_S`; every request is to the loopback host given with --host.
"""

from __future__ import annotations

import os
import uuid

from locust import LoadTestShape, between, task
from locust.contrib.fasthttp import FastHttpUser

CARD = {"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}


class Merchant(FastHttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {os.environ['SWITCH_API_KEY']}"}
        response = self.client.post("/v1/payments", json={"amount": 100, "currency": "usd", "payment_method": CARD},
                                    headers={**self.headers, "Idempotency-Key": str(uuid.uuid4())},
                                    name="/v1/payments [card]")
        self.token = response.json()["payment_method"]["token"] if response.status_code == 200 else None
        self.last_payment: str | None = None

    @task(10)
    def pay(self) -> None:
        method = self.token or CARD
        with self.client.post("/v1/payments", json={"amount": 1999, "currency": "usd", "payment_method": method},
                              headers={**self.headers, "Idempotency-Key": str(uuid.uuid4())},
                              name="/v1/payments", catch_response=True) as response:
            if response.status_code == 200:
                self.last_payment = response.json()["id"]
                response.success()
            elif response.status_code == 402:
                response.success()          # a decline is a correct answer, not a load-test failure
            else:
                response.failure(f"status {response.status_code}")

    @task(1)
    def read_back(self) -> None:
        if self.last_payment:
            self.client.get(f"/v1/payments/{self.last_payment}", headers=self.headers, name="/v1/payments/{id}")


class BlackFriday(LoadTestShape):
    """(end time s, users, spawn rate/s): warm-up, ramp to the evening, the midnight spike, plateau, decay.

    BLACK_FRIDAY_SCALE (default 1.0) scales the timeline and the users, e.g. 0.1 for a 30 s smoke run.
    """

    stages = [(30, 20, 5), (90, 200, 10), (120, 600, 100), (240, 400, 20), (300, 50, 20)]
    scale = float(os.environ.get("BLACK_FRIDAY_SCALE", "1.0"))
    TOTAL_S = stages[-1][0] * scale

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        for end_s, users, rate in self.stages:
            if run_time < end_s * self.scale:
                return max(1, round(users * self.scale)), max(1.0, rate * self.scale)
        return None

"""Settings of a switch process, read once from the environment (12-factor; the stack runner sets them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from switch.common.errors import ConfigError
from switch.idempotency.ratelimit import Limits
from switch.network.config import Endpoint, NetworkConfig


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    redis_url: str
    vault_socket: str
    vault_credential: str
    request_hmac_key: bytes
    networks: dict[str, NetworkConfig] = field(default_factory=dict)
    payment_budget_s: float = 1.8          # the whole request's budget, under the networks' 2 s rule
    network_timeout_s: float = 1.2         # the most of that budget one network round trip may take
    database_pool_size_max: int = 20
    idempotency_lock_ttl_s: int = 30       # Redis lock while a request is in flight
    idempotency_retention_s: int = 86_400  # keys expire after 24 h
    acquirer_id: str = "400001"            # field 32
    card_acceptor_prefix: str = "SW"       # terminal ids (field 41) are SW + worker number
    outbox_send_timeout_s: float = 5.0     # one advice or reversal round trip
    outbox_lease_s: float = 15.0           # a claimed outbox row is invisible to other senders this long
    outbox_poll_interval_s: float = 1.0    # outbox and recovery pass, when nothing wakes the sender
    recovery_grace_s: float = 2.0          # how long past its deadline a step in flight is left alone
    rate_limits: Limits = field(default_factory=Limits)   # per API key and per address (ratelimit.py)
    tls_cert_file: str = ""                # HTTPS on the merchant port when both are set (TLS 1.2+)
    tls_key_file: str = ""
    tcp_port: int = 0                      # the merchant TCP protocol's port (docs/merchant-protocol.md); 0: off
    fraud_budget_s: float = 0.025          # the fraud screen's wait for its counters (switch.fraud.screen)
    fraud_redis_url: str = ""              # the counters' own Redis (evictable); "": the idempotency Redis
    settlement_dir: str = ""               # where the networks' settlement files land; "": no settlement job
    settlement_reports_dir: str = "reports/settlement"
    settlement_poll_s: float = 60.0
    settlement_missing_after_days: float = 2.0   # an item the network has not settled by then is an exception
    payouts_dir: str = ""                  # where payout files for the bank are written; "": no payout job
    payouts_poll_s: float = 60.0
    webhooks_allow_loopback: bool = False  # deliver to 127.0.0.1 / ::1 (the dev stack and tests); never private
    webhook_retry_schedule_s: tuple[float, ...] = ()    # () : switch.frontends.webhooks.delivery's schedule


def _require(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} is required")
    return value


def parse_networks(text: str) -> dict[str, NetworkConfig]:
    """SWITCH_NETWORKS: {"visa": {"profile": "visa", "endpoints": [{"host": ..., "port": ...}]}, ...}."""
    try:
        raw = json.loads(text)
        return {
            name: NetworkConfig(
                name=name, profile=str(spec.get("profile", name)),
                endpoints=tuple(Endpoint(str(e["host"]), int(e["port"])) for e in spec["endpoints"]),
                links_per_endpoint=int(spec.get("links_per_endpoint", 1)),
                tls_ca_file=str(spec.get("tls_ca_file", "")),
            )
            for name, spec in raw.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"SWITCH_NETWORKS is malformed: {error.__class__.__name__}") from None


def _tls_files() -> tuple[str, str]:
    cert, key = os.environ.get("SWITCH_TLS_CERT_FILE", ""), os.environ.get("SWITCH_TLS_KEY_FILE", "")
    if bool(cert) != bool(key):
        raise ConfigError("SWITCH_TLS_CERT_FILE and SWITCH_TLS_KEY_FILE go together: set both or neither")
    return cert, key


def _rate_limits() -> Limits:
    """SWITCH_RATE_LIMIT_{KEY,ADDRESS}_{PER_S,BURST}, each defaulting to Limits'."""
    default = Limits()
    values = {}
    for name in ("key_per_s", "key_burst", "address_per_s", "address_burst"):
        text = os.environ.get(f"SWITCH_RATE_LIMIT_{name.upper()}", "")
        if text and (not (text.isascii() and text.isdigit()) or int(text) == 0):
            raise ConfigError(f"SWITCH_RATE_LIMIT_{name.upper()} must be a positive integer")
        values[name] = int(text) if text else getattr(default, name)
    return Limits(**values)


def load_settings() -> Settings:
    networks_text = os.environ.get("SWITCH_NETWORKS", "")
    if not networks_text and os.environ.get("SWITCH_NETWORKS_FILE"):
        with open(os.environ["SWITCH_NETWORKS_FILE"]) as handle:
            networks_text = handle.read()
    return Settings(
        database_url=_require("DATABASE_URL"),
        redis_url=_require("REDIS_URL"),
        vault_socket=_require("VAULT_SOCKET"),
        vault_credential=_require("VAULT_CREDENTIAL"),
        request_hmac_key=bytes.fromhex(_require("SWITCH_REQUEST_HMAC_KEY")),
        networks=parse_networks(networks_text or "{}"),
        payment_budget_s=float(os.environ.get("SWITCH_PAYMENT_BUDGET_S", "1.8")),
        network_timeout_s=float(os.environ.get("SWITCH_NETWORK_TIMEOUT_S", "1.2")),
        database_pool_size_max=int(os.environ.get("SWITCH_DATABASE_POOL_SIZE_MAX", "20")),
        idempotency_lock_ttl_s=int(os.environ.get("SWITCH_IDEMPOTENCY_LOCK_TTL_S", "30")),
        outbox_send_timeout_s=float(os.environ.get("SWITCH_OUTBOX_SEND_TIMEOUT_S", "5.0")),
        outbox_lease_s=float(os.environ.get("SWITCH_OUTBOX_LEASE_S", "15.0")),
        outbox_poll_interval_s=float(os.environ.get("SWITCH_OUTBOX_POLL_INTERVAL_S", "1.0")),
        recovery_grace_s=float(os.environ.get("SWITCH_RECOVERY_GRACE_S", "2.0")),
        rate_limits=_rate_limits(),
        tls_cert_file=_tls_files()[0],
        tcp_port=int(os.environ.get("SWITCH_TCP_PORT", "0") or 0),
        tls_key_file=_tls_files()[1],
        fraud_budget_s=float(os.environ.get("SWITCH_FRAUD_BUDGET_MS", "25")) / 1000,
        fraud_redis_url=os.environ.get("SWITCH_FRAUD_REDIS_URL", ""),
        settlement_dir=os.environ.get("SWITCH_SETTLEMENT_DIR", ""),
        settlement_reports_dir=os.environ.get("SWITCH_SETTLEMENT_REPORTS_DIR", "reports/settlement"),
        settlement_poll_s=float(os.environ.get("SWITCH_SETTLEMENT_POLL_S", "60")),
        settlement_missing_after_days=float(os.environ.get("SWITCH_SETTLEMENT_MISSING_AFTER_DAYS", "2")),
        payouts_dir=os.environ.get("SWITCH_PAYOUTS_DIR", ""),
        payouts_poll_s=float(os.environ.get("SWITCH_PAYOUTS_POLL_S", "60")),
        webhooks_allow_loopback=os.environ.get("SWITCH_WEBHOOKS_ALLOW_LOOPBACK", "") == "1",
        webhook_retry_schedule_s=tuple(float(part) for part in os.environ.get(
            "SWITCH_WEBHOOK_RETRY_SCHEDULE_S", "").split(",") if part.strip()),
    )

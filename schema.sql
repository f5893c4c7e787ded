-- The switch's record of truth. Applied by the stack runner as the `switch_app` role, which owns it.
-- The vault's tables live in their own schema and role (vault/schema.sql); switch_app cannot read them.
-- Amounts are integers in the currency's minor units. Timestamps are UTC.
--
-- The tables every payment writes (payments, idempotency_keys, payment_events, ledger_entries,
-- network_outbox, refunds) declare no foreign keys to merchants or payments. A foreign key check locks the
-- parent row FOR KEY SHARE, a lock written to the WAL: every payment locked its merchant's row (one row,
-- shared by all of that merchant's concurrent payments), and its own row again for each event, ledger entry,
-- advice and refund. Without those checks, and the vault's (vault/schema.sql), Postgres spent 61 µs less a
-- payment under the bench's mix (6 pairs; 96 in 4 earlier ones; docs/performance.md). Nothing deletes a
-- merchant or a payment, and each of these rows is written in the statement or transaction that writes or
-- holds its payment; `switch ledger check` reports any row naming a merchant or payment that does not exist.

CREATE TABLE merchants (
    id          text PRIMARY KEY,                      -- acct_<base62>
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- Requests per second per API key, and the burst above it (NULL: the switch's defaults).
    rate_limit_per_s  integer CHECK (rate_limit_per_s > 0),
    rate_limit_burst  integer CHECK (rate_limit_burst > 0),
    country     text NOT NULL DEFAULT 'US' CHECK (country ~ '^[A-Z]{2}$'),   -- where it trades (fraud signals)
    -- daily: the payout job pays the available balance out once per business day; manual: on request only.
    payout_schedule  text NOT NULL DEFAULT 'daily' CHECK (payout_schedule IN ('daily', 'manual')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of a 256-bit random secret (not a password: no salt or stretching
-- needed), with a visible prefix so operators can tell keys apart. The key itself is shown once.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,                     -- key_<base62>
    merchant_id  text NOT NULL REFERENCES merchants (id),
    prefix       text NOT NULL,                        -- e.g. sk_test_AbCd (first 12 characters)
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE payments (
    id                    text PRIMARY KEY,            -- pay_<base62>
    merchant_id           text NOT NULL,
    status                text NOT NULL CHECK (status IN ('processing', 'requires_capture', 'succeeded',
                                                         'canceled', 'failed', 'settled')),
    amount                bigint NOT NULL CHECK (amount > 0),
    currency              text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    capture_method        text NOT NULL CHECK (capture_method IN ('automatic', 'manual')),
    amount_capturable     bigint NOT NULL DEFAULT 0 CHECK (amount_capturable >= 0),
    amount_received       bigint NOT NULL DEFAULT 0 CHECK (amount_received >= 0),
    amount_refunded       bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    card_token            text NOT NULL,               -- vault token; the PAN never enters this schema
    card_brand            text NOT NULL,
    card_last4            text NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    card_exp_month        smallint NOT NULL,
    card_exp_year         smallint NOT NULL,
    network               text NOT NULL,
    terminal_id           text NOT NULL,
    stan                  text NOT NULL,               -- field 11 of the authorization
    rrn                   text NOT NULL,               -- field 37 of the authorization
    transmitted_at        text NOT NULL,               -- field 7 (MMDDhhmmss) of the authorization
    auth_code             text,                        -- field 38
    response_code         text,                        -- field 39
    decline_code          text,
    failure_message       text,
    description           text,
    statement_descriptor  text,
    metadata              jsonb NOT NULL DEFAULT '{}'::jsonb,
    card_fingerprint      text,                        -- keyed per merchant (switch.fraud): never the PAN
    -- The signals the fraud screen saw, which backtests run candidate rules over: a msgpack array of the
    -- values in a fixed order (switch.fraud.signals.pack_signals), about 100 bytes, in the row it is written
    -- with rather than a row and an index of its own. Never updated.
    signals               bytea,
    -- The fraud screen's decision, score, rule and reasons.
    fraud                 jsonb,
    review_status         text CHECK (review_status IN ('open', 'approved', 'rejected')),
    deadline_at           timestamptz NOT NULL,        -- after this, a payment still processing is recovered
    -- The key of the request that created it: recovery answers that key by primary key (idempotency_keys has
    -- no index on payment_id). NULL only for rows written by hand.
    idempotency_key       text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (amount_received <= amount),
    CHECK (amount_refunded <= amount_received)
);
CREATE INDEX payments_merchant_created ON payments (merchant_id, created_at DESC, id DESC);
CREATE INDEX payments_in_flight ON payments (deadline_at) WHERE status = 'processing';
CREATE UNIQUE INDEX payments_network_rrn ON payments (network, rrn);
CREATE INDEX payments_open_reviews ON payments (merchant_id, created_at DESC, id DESC) WHERE review_status = 'open';

-- One row per state transition, written in the same transaction as the transition.
CREATE TABLE payment_events (
    id             bigserial PRIMARY KEY,
    payment_id     text NOT NULL,
    type           text NOT NULL,                      -- e.g. authorization.approved, capture.succeeded
    from_status    text,
    to_status      text NOT NULL,
    amount         bigint,
    response_code  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_events_payment ON payment_events (payment_id, id);

-- Merchant events (switch.events, docs/events.md): one row per state change a merchant can see, written
-- in the same statement or transaction as the change. `data` is the object as of the change: the
-- canonical outcome (msgpack, switch.payments.outcome) the change's statement carries anyway, rendered
-- by the API when read; NULL for a change written set-based in SQL (a settlement), rendered from the
-- row as it is now. Kept 30 days (switch.events.prune).
CREATE TABLE events (
    id           bigserial PRIMARY KEY,              -- the API's evt_<id>: ordered, so a cursor is an id
    merchant_id  text NOT NULL,
    type         text NOT NULL,                      -- payment.succeeded, refund.failed, ... (docs/events.md)
    object_id    text NOT NULL,                      -- pay_..., re_...
    data         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction's id: webhook delivery reads a merchant's events in (xid, id) order, up to
    -- the oldest transaction still running, so an event committed late (a lower id than one already
    -- delivered) is never passed over (switch.frontends.webhooks.delivery, docs/events.md).
    xid          bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint
);
CREATE INDEX events_merchant ON events (merchant_id, id);
CREATE INDEX events_delivery ON events (merchant_id, xid, id);
-- BRIN: rows arrive in time order, so the pruning finds the old ones at almost no cost per insert.
CREATE INDEX events_created ON events USING brin (created_at);

CREATE TABLE refunds (
    id             text PRIMARY KEY,                   -- re_<base62>
    payment_id     text NOT NULL,
    merchant_id    text NOT NULL,
    amount         bigint NOT NULL CHECK (amount > 0),
    currency       text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'settled')),
    terminal_id    text NOT NULL,                      -- field 41 of the refund's 0200 (its reversal needs it)
    stan           text NOT NULL,
    rrn            text NOT NULL,
    transmitted_at text NOT NULL,
    response_code  text,
    failure_code   text,
    idempotency_key text NOT NULL,                     -- the request's key: recovery stores its answer there
    deadline_at    timestamptz NOT NULL,               -- after this, a refund still pending is recovered
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id);
CREATE INDEX refunds_merchant_created ON refunds (merchant_id, created_at DESC, id DESC);   -- a merchant's refund list
CREATE INDEX refunds_in_flight ON refunds (deadline_at) WHERE status = 'pending';

-- PaymentIntents created without confirm=true (the Stripe-compatible API): what the merchant asked, until
-- it confirms. Confirming makes the payment under the same id; a draft is never card data (a test payment
-- method's name or a vault token at most).
CREATE TABLE payment_intent_drafts (
    id              text PRIMARY KEY,                  -- pay_<base62>: the payment's id once confirmed
    merchant_id     text NOT NULL REFERENCES merchants (id),
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text NOT NULL,
    payment_method  text,                              -- pm_card_visa, pm_<token>, or none yet
    params          bytea NOT NULL,                    -- the create's parameters (msgpack)
    canceled        boolean NOT NULL DEFAULT false,
    confirming_at   timestamptz,                       -- a confirmation's claim: a cancel waits it out
    idempotency_key text NOT NULL,
    fingerprint     bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, idempotency_key)
);

-- Customers and their saved cards (the Stripe-compatible API). A saved card is its vault token with what may
-- be shown of it; the number stays in the vault.
CREATE TABLE customers (
    id              text PRIMARY KEY,                  -- cus_<base62>
    merchant_id     text NOT NULL REFERENCES merchants (id),
    email           text,
    name            text,
    description     text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key text NOT NULL,
    fingerprint     bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, idempotency_key)
);
CREATE TABLE payment_methods (
    token          text PRIMARY KEY,                   -- the vault's tok_X; its PaymentMethod is pm_X
    merchant_id    text NOT NULL REFERENCES merchants (id),
    customer_id    text REFERENCES customers (id),
    brand          text NOT NULL,
    last4          text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month      smallint NOT NULL,
    exp_year       smallint NOT NULL,
    fingerprint    text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_methods_customer ON payment_methods (customer_id, created_at DESC) WHERE customer_id IS NOT NULL;

-- Idempotency (Stripe semantics). Written before anything is sent to a network: the row is the
-- write-ahead record of the request; its stored outcome is rendered again, byte for byte, on a replay.
CREATE TABLE idempotency_keys (
    merchant_id      text NOT NULL,
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_method   text NOT NULL,
    request_path     text NOT NULL,
    fingerprint      bytea NOT NULL,                   -- HMAC-SHA256 of the request (keyed: bodies hold PANs)
    payment_id       text,
    outcome          bytea,                            -- the canonical outcome (msgpack); NULL while in flight
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (merchant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Trace numbers: one 64-bit counter, handed to workers in blocks of 1,000 (block n covers counters
-- n*1000 .. n*1000+999). A counter c gives STAN (field 11) = c mod 10^6, terminal id (field 41) =
-- SW + (c div 10^6) mod 10^6 and RRN (field 37) = c mod 10^12, so (terminal, STAN) and RRN are unique
-- across workers and restarts even at thousands of payments per second.
CREATE SEQUENCE trace_blocks AS bigint MINVALUE 1 START 1;

-- Store-and-forward queue of messages the network must acknowledge (capture advices 0220/0221,
-- reversals 0400/0420/0421). A row is written in the same transaction as the state change that needs it,
-- so a crash can never lose one; a worker sends it until acknowledged. No PAN here: the sender fetches
-- the card from the vault by the payment's token.
CREATE TABLE network_outbox (
    id               bigserial PRIMARY KEY,
    payment_id       text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('capture_advice', 'reversal')),
    refund_id        text REFERENCES refunds (id),       -- set when a refund's 0200 is being reversed
    network          text NOT NULL,
    original_mti     text NOT NULL,                      -- MTI of the message advised or reversed
    processing_code  text NOT NULL DEFAULT '000000',
    amount           bigint NOT NULL,                    -- the amount the network should end up with
    original_amount  bigint NOT NULL,
    stan             text NOT NULL,
    rrn              text NOT NULL,
    transmitted_at   text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    response_code    text,                 -- the answer's field 39; while unacknowledged, the last one that was
                                           -- no acknowledgement (switch.outbox.sender.acknowledges)
    acknowledged_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX network_outbox_due ON network_outbox (next_attempt_at) WHERE acknowledged_at IS NULL;

-- Double-entry ledger: every posting's entries sum to zero (see `switch ledger check`).
CREATE TABLE ledger_entries (
    id           bigserial PRIMARY KEY,
    posting_id   text NOT NULL,
    payment_id   text,
    account      text NOT NULL,             -- network:<name>:receivable, merchant:<id>:payable, platform:fees
    amount       bigint NOT NULL,           -- signed minor units: debit positive, credit negative
    currency     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_posting ON ledger_entries (posting_id);
-- A merchant's balance and balance transactions are its two accounts' entries (switch.settlement.balance).
-- starts_with, not a range of text: a range's meaning depends on the database's collation.
CREATE INDEX ledger_entries_merchant ON ledger_entries (account, id) WHERE starts_with(account, 'merchant:');

-- Fraud screening (switch.fraud, docs/fraud.md). A merchant's rules are versioned: every change is a new
-- version row, and the highest version is in force (none: the documented defaults).
CREATE TABLE fraud_rule_sets (
    merchant_id  text NOT NULL REFERENCES merchants (id),
    version      integer NOT NULL CHECK (version > 0),
    rules        jsonb NOT NULL,            -- [{"rule": "block if ...", "shadow": false}, ...]
    fail_closed  boolean NOT NULL DEFAULT false,
    actor        text NOT NULL,             -- who made this version: an API key id or "cli:<user>"
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, version)
);

-- Allow and block lists: values a rule tests with `in @name` (fingerprints, BINs, IPs, emails, countries).
CREATE TABLE fraud_list_items (
    merchant_id  text NOT NULL REFERENCES merchants (id),
    list_name    text NOT NULL CHECK (list_name ~ '^[a-z][a-z0-9_]{0,63}$'),
    value        text NOT NULL CHECK (length(value) BETWEEN 1 AND 254),
    actor        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, list_name, value)
);

-- Every change to a merchant's rules, lists or reviews: who, when, what.
CREATE TABLE fraud_audit (
    id           bigserial PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants (id),
    actor        text NOT NULL,
    action       text NOT NULL,             -- rules.updated, list.added, list.removed, review.approved, ...
    detail       jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fraud_audit_merchant ON fraud_audit (merchant_id, id);

-- Settlement (switch.settlement, docs/settlement.md): the networks' daily files, line by line, and what each
-- line matched. A file is imported once (its SHA-256); a corrected re-issue of the same cut-off supersedes
-- the earlier file, which stays, marked, with its lines and matches.
CREATE TABLE settlement_files (
    id             bigserial PRIMARY KEY,
    network        text NOT NULL,
    file_name      text NOT NULL,
    sha256         bytea NOT NULL,
    cut_off_at     timestamptz,                    -- from the trailer
    settlement_date date,
    lines          integer NOT NULL,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'superseded')),
    superseded_by  bigint REFERENCES settlement_files (id),
    imported_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (network, sha256)
);
CREATE INDEX settlement_files_cut_off ON settlement_files (network, cut_off_at) WHERE status = 'active';

CREATE TABLE settlement_lines (
    file_id           bigint NOT NULL REFERENCES settlement_files (id),
    line_no           integer NOT NULL,             -- 1 is the header
    raw               text NOT NULL,                -- the line as the network sent it
    record_type       text NOT NULL,                -- D detail, T trailer, H header; M: an item of ours the
                                                    -- file should have settled and did not (missing_in_theirs),
                                                    -- numbered after the file's own lines
    rrn               text,
    stan              text,
    terminal_id       text,
    auth_code         text,
    transaction_type  text,
    amount_minor      bigint,
    currency          text,                         -- ISO 4217 numeric, as in the file
    transaction_date  date,
    interchange_fee_minor bigint,
    PRIMARY KEY (file_id, line_no)
);

CREATE TABLE settlement_matches (
    file_id            bigint NOT NULL,
    line_no            integer NOT NULL,
    class              text NOT NULL CHECK (class IN ('matched', 'amount_mismatch', 'missing_in_ours',
                                                      'duplicate_in_file', 'settled_after_reversal',
                                                      'currency_mismatch', 'missing_in_theirs')),
    payment_id         text,
    refund_id          text,
    ours_amount_minor  bigint,                      -- what we recorded (captured, sold or refunded)
    theirs_amount_minor bigint,                     -- what the line settles, unsigned
    PRIMARY KEY (file_id, line_no),
    FOREIGN KEY (file_id, line_no) REFERENCES settlement_lines (file_id, line_no)
);
CREATE INDEX settlement_matches_class ON settlement_matches (file_id, class);
-- The lines that did not match: a few, against millions that did; the metrics count the open ones every few
-- seconds (switch.store.backlog).
CREATE INDEX settlement_matches_unmatched ON settlement_matches (file_id, line_no) WHERE class <> 'matched';

-- An operator's resolution of a settlement exception (a line that did not match): who, when, what, why.
CREATE TABLE settlement_resolutions (
    file_id      bigint NOT NULL,
    line_no      integer NOT NULL,
    action       text NOT NULL CHECK (action IN ('acknowledge', 'dispute', 'write_off')),
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    actor        text NOT NULL,
    resolved_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, line_no),
    FOREIGN KEY (file_id, line_no) REFERENCES settlement_matches (file_id, line_no)
);

-- Payouts (switch.settlement.payouts, docs/settlement.md): a merchant's available balance paid out to its
-- bank. pending (booked: available -> payout clearing) -> in_transit (in a payout file sent to the bank)
-- -> paid (the bank confirmed: clearing -> bank) or failed (the funds are back in available).
CREATE TABLE payouts (
    id               text PRIMARY KEY,                 -- po_<base62>
    merchant_id      text NOT NULL REFERENCES merchants (id),
    currency         text NOT NULL,                    -- ISO 4217 alphabetic, lower case
    amount           bigint NOT NULL CHECK (amount > 0),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'in_transit', 'paid', 'failed')),
    automatic        boolean NOT NULL,                 -- made by the daily schedule, not on request
    scheduled_for    date,                             -- the schedule's business day (automatic only)
    idempotency_key  text,                             -- a requested payout's Idempotency-Key
    request_hash     bytea,                            -- and what it asked, to refuse the key's reuse
    file_name        text,                             -- the payout file it went out in
    failure_code     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, idempotency_key),
    UNIQUE (merchant_id, currency, scheduled_for)
);
CREATE INDEX payouts_merchant ON payouts (merchant_id, created_at DESC, id DESC);
CREATE INDEX payouts_unfiled ON payouts (created_at) WHERE status = 'pending';

-- Webhooks (switch.frontends.webhooks, docs/events.md): a merchant's endpoints, each with a cursor over its
-- merchant's events (every event up to it has had its first attempt), held by one worker at a time through
-- a lease; a delivery row only for an event to retry (its first attempt failed) or to send again (a replay).
CREATE TABLE webhook_endpoints (
    id               text PRIMARY KEY,                  -- we_<base62>
    merchant_id      text NOT NULL REFERENCES merchants (id),
    url              text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
    enabled_events   text[] NOT NULL,                   -- event types, or {*}
    description      text CHECK (length(description) <= 500),
    status           text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason  text,
    secret           text NOT NULL,                     -- whsec_<base64>: signs the deliveries (not card data)
    previous_secret  text,                              -- after a roll, also signs until it expires
    previous_secret_expires_at timestamptz,
    failing_since    timestamptz,                       -- the first failed attempt since the last delivery
    deleted          boolean NOT NULL DEFAULT false,
    -- standard: the native event, Standard Webhooks headers; stripe: Stripe's event and Stripe-Signature
    format           text NOT NULL DEFAULT 'standard' CHECK (format IN ('standard', 'stripe')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- The cursor, in events' (xid, id) order: starts at the oldest transaction running when the endpoint
    -- is made (or enabled again), so it gets the events written from then on.
    cursor_xid       bigint NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
    cursor_event_id  bigint NOT NULL DEFAULT 0,
    lease_owner      text,                              -- the worker delivering from the cursor, until
    lease_until      timestamptz
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id) WHERE status = 'enabled' AND NOT deleted;

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    event_id         bigint NOT NULL,
    -- No foreign keys here or in webhook_attempts: every row comes from a join with its endpoint (a
    -- first attempt that failed, a replay) or its claimed delivery, endpoints are never deleted (only marked), and events
    -- are pruned with their deliveries and attempts in one statement. A key check would lock the endpoint's
    -- row in every event-writing transaction (one merchant's endpoint, many concurrent payments: a hot row)
    -- and each delivery's row on every attempt.
    endpoint_id      text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)       -- also the index of an event's deliveries
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- Every attempt: when, what came back (a bounded excerpt), how long it took. A first attempt that succeeds
-- is this row alone.
CREATE TABLE webhook_attempts (
    id            bigserial PRIMARY KEY,
    event_id      bigint NOT NULL,
    endpoint_id   text NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    http_status   integer,                              -- NULL: no answer (refused, timed out, closed)
    error         text,
    latency_ms    integer NOT NULL,
    excerpt       text CHECK (length(excerpt) <= 1024)
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, endpoint_id, id);

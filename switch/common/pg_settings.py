"""Postgres session settings (asyncpg's server_settings) that the switch's pools and the vault's share."""

from __future__ import annotations

# For a pool whose statements all find their rows by key over a table that only grows (the outbox, the
# vault's tokens): a connection keeps the plan it made while the table was small until the table is next
# analyzed, and a sequential scan then reads every row ever written (see switch.store.outbox).
KEYED_ONLY = {"enable_seqscan": "off"}

# For a pool whose statements join a batch's few rows to large tables by their keys (switch.payments.locked):
# planned on a small table, a hash join read the whole primary-key index of `idempotency_keys` to match the
# batch's keys, where a nested loop looks each one up.
KEYED_JOINS = {**KEYED_ONLY, "enable_hashjoin": "off", "enable_mergejoin": "off"}

# No JIT compilation. Postgres compiles a statement whose estimated cost passes jit_above_cost (100,000),
# and a statement of a few rows can be estimated that high: the backlog sample, costed for 190 webhook
# endpoints where the bench has one, compiled 66 functions on every run and took 35-72 ms, nearly all of it
# compiling. The pools run short statements; a single connection a command-line tool opens
# (switch.store.pool.connect) keeps the server's setting for its long scans.
NO_JIT = {"jit": "off"}

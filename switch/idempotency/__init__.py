"""Idempotency with Stripe's semantics, owned here: the Redis lock in front (``lock``), the Postgres row
behind it (``switch.store.idempotency``), and the stored canonical outcome replayed from either.

The owner answers explicit results (``Lock``), never exceptions: a refusal (key in use, reused with other
parameters, Redis unreachable) or a replay is a value the payments pipeline turns into its outcome.
"""

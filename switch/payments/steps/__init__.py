"""The steps a payment goes through, one module each, in the order an authorization meets them:
idempotency (lock) -> card -> fraud -> route -> write_ahead -> send -> record (ledger postings inside) ->
events; ``fail`` is the one fail-and-reverse step of a timeout, a crash found by recovery and a late answer.
"""

"""Store-and-forward to the networks: capture advices and reversals queued in Postgres in the same
transaction as the state change that needs them, sent until the network acknowledges them."""

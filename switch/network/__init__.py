"""Network layer: framing -> link (MUX, echo, sign-on) -> pool. Never touches Postgres, Redis or the vault."""

"""Operations: each one a fixed list of steps (switch.payments.steps) over one context."""

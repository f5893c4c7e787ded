"""Fraud screening: the rule language, signals, velocity counters, risk score and verdict (docs/fraud.md)."""

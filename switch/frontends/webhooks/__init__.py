"""Webhooks: merchant events pushed to the merchants' endpoints, signed per the Standard Webhooks spec
(docs/events.md)."""

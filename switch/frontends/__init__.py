"""Front ends: each decodes and authenticates its requests into typed commands (switch.payments.commands)
and renders the outcomes in its own format. Today: the merchant HTTP API (``http``)."""

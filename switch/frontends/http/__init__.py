"""The native merchant HTTP API: ``app`` routes and authenticates, ``schema`` decodes bodies into commands,
``render`` turns outcomes into JSON objects and Stripe-style errors."""

"""Payments: commands in, a fixed pipeline of steps, outcomes out (see docs/architecture.md).

``engine.Payments`` is the entry; ``operations`` are lists of ``steps`` over one ``context.Context``;
``results`` is the one table of what each outcome means; ``states`` the transition tables.
"""

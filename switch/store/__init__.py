"""All SQL of the switch, one module per table group. Functions return records (switch.store.records) or
plain values, never API objects. Families share prefixes: ``get_`` / ``list_`` read, ``insert_`` /
``update_`` / ``delete_`` write, ``lock_`` reads ``FOR UPDATE`` inside the caller's transaction.

Each write is one statement (a CTE chain) or one short transaction: a payment step costs one round trip,
and a crash between statements can never leave half of a step written.
"""

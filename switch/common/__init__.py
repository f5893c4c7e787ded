"""The shared kernel: small pure helpers every process may import (the switch, the vault, the simulator).

Nothing here touches Postgres, Redis or a network peer of its own, and nothing here imports the rest of
``switch``.
"""

"""The switch's processes: supervisor, workers, their settings and the command line.

Importing this package prepares prometheus-client for our worker processes (below), so it must be imported
before any metric is defined: ``switch.process.cli`` is the entry point of every switch process, and nothing
outside this package imports it. The vault and the simulator never import it.
"""

import os as _os

if _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus-client's multiprocess values call os.getpid() on every update (about 13 syscalls per
    # payment) to notice a fork. Our worker processes are started with exec and never fork, so the pid is
    # read once. This must run before any metric is defined, hence here.
    from prometheus_client import values as _values

    _PID = _os.getpid()
    _values.ValueClass = _values.MultiProcessValue(process_identifier=lambda: _PID)

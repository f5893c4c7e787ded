"""The payment switch."""

import os as _os

if _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus-client's multiprocess values call os.getpid() on every update (about 13 syscalls per
    # payment) to notice a fork. Our worker processes are started with exec and never fork, so the pid is
    # read once. This must run before any metric is defined, hence here.
    from prometheus_client import values as _values

    _PID = _os.getpid()
    _values.ValueClass = _values.MultiProcessValue(process_identifier=lambda: _PID)

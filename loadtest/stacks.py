"""Running a load tool on a throwaway stack: started, used, stopped and its run directory removed (kept, and
named, with `keep_run_dir`), with a stack that fails to start reported as the tool's own error (exit 1)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import Any


def run_on_stack(tool: str, stack: Any, start: Callable[[Any], None], body: Callable[[Any], int],
                 keep_run_dir: bool = False) -> int:
    from switch.dev.devstack import StackError

    try:
        print("starting the stack ...", flush=True)
        start(stack)
        return body(stack)
    except StackError as error:
        print(f"{tool}: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        if keep_run_dir:
            print(f"run dir kept: {stack.run_dir}")
        else:
            shutil.rmtree(stack.run_dir, ignore_errors=True)   # logs, HSM token and key files of this run

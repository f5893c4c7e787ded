"""`acquirer-sim` / `python -m acquirer_sim`: run the simulated networks and the control API.

Prints one line, `SIM READY visa=<port> mastercard=<port> generic=<port> control=<port>`, once every
listener is bound, then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from acquirer_sim.control import ControlApi
from acquirer_sim.server import RECORDS_MAX_DEFAULT, Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="acquirer-sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--visa-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mastercard-port", type=int, default=0)
    parser.add_argument("--generic-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument(
        "--records-max",
        type=int,
        default=RECORDS_MAX_DEFAULT,
        help="messages kept for GET /records (oldest dropped first)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    simulator = Simulator(records_max=args.records_max)
    control = ControlApi(simulator)
    ports = await simulator.start(
        args.host,
        {
            "visa": args.visa_port,
            "mastercard": args.mastercard_port,
            "generic": args.generic_port,
        },
    )
    control_port = await control.start(args.host, args.control_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    print(
        f"SIM READY visa={ports['visa']} mastercard={ports['mastercard']} generic={ports['generic']} "
        f"control={control_port}",
        flush=True,
    )
    await stop.wait()
    await control.close()
    await simulator.close()


def main(argv: list[str] | None = None) -> None:
    uvloop.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])

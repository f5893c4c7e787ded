"""`acquirer-sim` / `python -m acquirer_sim`: run the simulated networks and the control API.

Prints one line, `SIM READY visa=<port> mastercard=<port> generic=<port> control=<port>`, once every
listener is bound (and any --behaviour or --scenario is in force), then runs until SIGTERM or SIGINT.
Behaviour knobs, scenarios and settlement files are described in docs/simulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import uvloop

from acquirer_sim.behaviour import BehaviourError
from acquirer_sim.control import SETTLEMENT_DIR_DEFAULT, ControlApi
from acquirer_sim.issuer import DUPLICATES_MAX_DEFAULT, UNSETTLED_MAX_DEFAULT, Issuer
from acquirer_sim.scenario import ScenarioError, load_scenario
from acquirer_sim.server import RECORDS_MAX_DEFAULT, Simulator
from acquirer_sim.settlement import Settlement, parse_daily_at
from switch.common import collector
from switch.common.tls import server_context
from switch.iso.mac import MacKeyError, parse_master_keys


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
    parser.add_argument(
        "--transactions-max",
        type=int,
        default=DUPLICATES_MAX_DEFAULT,
        help="original transactions remembered for duplicates, captures and reversals (oldest forgotten first)",
    )
    parser.add_argument(
        "--unsettled-max",
        type=int,
        default=UNSETTLED_MAX_DEFAULT,
        help="cleared items kept for the next settlement file (beyond it the oldest are dropped and counted)",
    )
    parser.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar='NETWORK=JSON',
        help='start-up knobs of one network, e.g. visa=\'{"latency_ms": 20}\' (repeatable)',
    )
    parser.add_argument("--scenario", type=Path, help="a JSON or TOML timeline of behaviour changes")
    parser.add_argument(
        "--mac-key-file",
        type=Path,
        help="JSON of network -> hex MAC master key (mode 0600); without it MAC'd networks refuse sign-on",
    )
    parser.add_argument("--settlement-dir", type=Path, default=SETTLEMENT_DIR_DEFAULT)
    parser.add_argument("--tls-cert", type=Path, help="TLS (1.2+) on the network ports with this certificate ...")
    parser.add_argument("--tls-key", type=Path, help="... and this key (the control API stays plain, on loopback)")
    parser.add_argument(
        "--settlement-time", default="00:00", help="daily cut-off, HH:MM UTC, or 'off' (POST /settlement always works)"
    )
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        args.settlement_time = parse_daily_at(args.settlement_time)
    except ValueError:
        parser.error("--settlement-time must be HH:MM (UTC) or off")
    try:
        args.behaviour = [_behaviour_arg(text) for text in args.behaviour]
    except ValueError as error:
        parser.error(f"--behaviour: {error}")
    return args


def _behaviour_arg(text: str) -> tuple[str, dict[str, Any]]:
    network, separator, fields = text.partition("=")
    if not separator:
        raise ValueError(f"expected NETWORK=JSON, got {text!r}")
    changes = json.loads(fields)
    if not isinstance(changes, dict):
        raise ValueError("the JSON must be an object")
    return network, changes


async def serve(args: argparse.Namespace) -> None:
    issuer = Issuer(duplicates_max=args.transactions_max, unsettled_max=args.unsettled_max)
    try:
        mac_master_keys = parse_master_keys(args.mac_key_file.read_text()) if args.mac_key_file else None
    except (OSError, MacKeyError) as error:
        sys.exit(f"acquirer-sim: --mac-key-file: {type(error).__name__}: {error}")
    simulator = Simulator(records_max=args.records_max, issuer=issuer, mac_master_keys=mac_master_keys)
    for name, changes in args.behaviour:
        if name not in simulator.networks:
            sys.exit(f"acquirer-sim: --behaviour: unknown network {name!r}")
        try:
            simulator.networks[name].set_behaviour(changes)
        except BehaviourError as error:
            sys.exit(f"acquirer-sim: --behaviour {name}: {error}")
    try:
        scenario = load_scenario(args.scenario, simulator.networks) if args.scenario else None
    except (OSError, ScenarioError) as error:
        sys.exit(f"acquirer-sim: --scenario: {error}")
    settlement = Settlement(issuer, simulator.networks, args.settlement_dir)
    control = ControlApi(simulator, settlement)
    tls = server_context(str(args.tls_cert), str(args.tls_key)) if args.tls_cert else None
    ports = await simulator.start(
        args.host,
        {
            "visa": args.visa_port,
            "mastercard": args.mastercard_port,
            "generic": args.generic_port,
        },
        tls,
    )
    control_port = await control.start(args.host, args.control_port)
    if scenario is not None:
        control.scenarios.start(scenario)
    loop = asyncio.get_running_loop()
    daily = loop.create_task(settlement.run_daily(args.settlement_time)) if args.settlement_time else None
    # Its transactions and accounts live long and keep coming: frozen as they age (switch.common.collector).
    freezing = loop.create_task(collector.freeze_every())
    stop = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    print(
        f"SIM READY visa={ports['visa']} mastercard={ports['mastercard']} generic={ports['generic']} "
        f"control={control_port}",
        flush=True,
    )
    await stop.wait()
    for task in (daily, freezing):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await control.close()
    await simulator.close()


def main(argv: list[str] | None = None) -> None:
    uvloop.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Vault throughput: tokenize and detokenize per second, and microseconds per call.

    python -m loadtest.vaultbench [--count 20000] [--concurrency 64] [--duration-s 10]

Starts a throwaway Postgres and SoftHSM2 token and the real ``vault serve`` process (switch.dev.devstack), then
drives it from this process over the Unix socket with ``VaultClient``: first one call at a time (the latency
of one call), then ``--concurrency`` calls in flight (throughput). Every phase stops at ``--count`` calls or
``--duration-s``, whichever comes first. With VAULT_SOCKET and VAULT_CREDENTIAL set it loads that vault
instead. The PANs are random test numbers; nothing is printed but figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from switch.common.cards import CardNumber, SecretStr
from switch.dev.devstack import REPO_ROOT, Stack, StackError, new_run_dir
from switch.vault_client import VaultClient

MERCHANT_ID = "m_vaultbench"


def random_pan(prefix: str = "424242", length: int = 16) -> str:
    body = prefix + "".join(str(secrets.randbelow(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


async def run_phase(name: str, call: Callable[[int], Awaitable[object]], count: int, concurrency: int,
                    duration_s: float) -> dict[str, float]:
    """``count`` calls (or until ``duration_s``) with ``concurrency`` in flight; latency per call in µs."""
    latencies_us: list[float] = []
    errors = [0]
    next_index = [0]
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        while next_index[0] < count and time.perf_counter() < deadline:
            index = next_index[0]
            next_index[0] += 1
            started = time.perf_counter()
            try:
                await call(index)
            except Exception:  # noqa: BLE001 - counted and reported; a benchmark keeps going
                errors[0] += 1
                continue
            latencies_us.append((time.perf_counter() - started) * 1e6)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed_s = time.perf_counter() - started
    done = len(latencies_us)
    ordered = sorted(latencies_us) or [0.0]
    result = {
        "calls": done, "errors": errors[0], "per_s": done / elapsed_s if elapsed_s else 0.0,
        "us_per_call_wall": elapsed_s * 1e6 / done if done else 0.0,
        "p50_us": ordered[len(ordered) // 2], "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "mean_us": statistics.fmean(ordered),
    }
    print(f"{name:<24} {done:>7} calls  {result['per_s']:>9.0f}/s  {result['us_per_call_wall']:>8.1f} µs/call (wall)"
          f"  latency mean {result['mean_us']:.0f} p50 {result['p50_us']:.0f} p99 {result['p99_us']:.0f} µs"
          f"  errors {errors[0]}", flush=True)
    return result


async def bench(socket_path: str, credential: str, count: int, concurrency: int, duration_s: float) -> int:
    client = VaultClient(socket_path, credential, connections=4, inflight_max=max(4096, concurrency * 2),
                         timeout_s=10.0, caller="vaultbench")
    await client.connect()
    try:
        pans = [CardNumber(random_pan()) for _ in range(count)]
        tokens: list[str] = []

        async def tokenize(index: int) -> None:
            info = await client.tokenize(MERCHANT_ID, pans[index], 12, 2034, SecretStr("123"))
            tokens.append(info.token)

        async def detokenize(index: int) -> None:
            await client.detokenize(MERCHANT_ID, tokens[index % len(tokens)])

        sequential = max(1, min(count // 10, 2000))
        print(f"vault bench: {count} calls per phase max, {duration_s:.0f}s max, concurrency {concurrency}")
        await run_phase("tokenize (1 in flight)", lambda i: tokenize(i), sequential, 1, duration_s)
        first = len(tokens)
        await run_phase("detokenize (1 in flight)", lambda i: detokenize(i), sequential, 1, duration_s)
        bulk_tok = await run_phase(f"tokenize ({concurrency} in flight)", lambda i: tokenize(first + i),
                                   count - first, concurrency, duration_s)
        bulk_detok = await run_phase(f"detokenize ({concurrency} in flight)", detokenize, count, concurrency,
                                     duration_s)
        errors = int(bulk_tok["errors"] + bulk_detok["errors"])
        print(f"RESULT tokenize_per_s={bulk_tok['per_s']:.0f} tokenize_us_per_call={bulk_tok['us_per_call_wall']:.1f}"
              f" detokenize_per_s={bulk_detok['per_s']:.0f}"
              f" detokenize_us_per_call={bulk_detok['us_per_call_wall']:.1f} errors={errors}", flush=True)
        return 1 if errors else 0
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.vaultbench", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="calls per phase at most")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=10.0, help="seconds per phase at most")
    args = parser.parse_args(argv)
    if os.environ.get("VAULT_SOCKET") and os.environ.get("VAULT_CREDENTIAL"):
        return asyncio.run(bench(os.environ["VAULT_SOCKET"], os.environ["VAULT_CREDENTIAL"], args.count,
                                 args.concurrency, args.duration_s))
    run_dir = new_run_dir(REPO_ROOT / ".run")
    stack = Stack(run_dir=run_dir)
    try:
        stack.start_postgres()
        stack.init_hsm()
        stack.start_vault()
        return asyncio.run(bench(stack.vault_socket, stack.vault_credential, args.count, args.concurrency,
                                 args.duration_s))
    except StackError as error:
        print(f"vaultbench: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

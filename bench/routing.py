"""Routing overhead: what a five-deployment group costs, in process and through ``uniinfer serve``.

Two measurements, both pinned to core 0:

- **in process** (default part one): the whole gateway app with the upstream
  answered from memory (bench/micro.py's ``CannedHttp``), so the figures are
  the gateway's own CPU per request; the difference between a group of five
  and a group of one is what routing adds (strategy ordering, breaker and
  window bookkeeping), and ``uniinfer/auto`` with five rules adds the request
  analyser and rule matching.
- **served** (part two): the foundation's budget itself, end to end. One
  ``uniinfer serve`` (auth and usage accounting on, as in bench/run.py) on
  core 0 holds a group per case, the fake upstream (bench/upstream.py, 0 ms)
  and the load generator share core 1; each case is loaded at concurrency 16
  in alternating rounds of a few seconds and reported by its median CPU per
  request and requests/s, against the foundation's targets (at most 0.30 ms
  of gateway CPU per request, at least 3,500 requests/s).

Usage::

    uv run python bench/routing.py [--part in-process|served|both] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import orjson
import uvloop
from benchlib import ROOT, Server, free_port
from load import Phase, detect_tool, run_phase
from micro import _HEADERS, CannedHttp, _drive
from run import GATEWAY_CORE, MASTER_KEY, UPSTREAM_CORE

from uniinfer.config import parse_config
from uniinfer.gateway import Gateway
from uniinfer.server import create_app

__all__ = ["main"]

DEPLOYMENTS = 5
STRATEGIES = ("priority", "weighted", "least_inflight", "lowest_latency", "lowest_cost", "usage_headroom")
#: The foundation's targets for the 0 ms upstream at concurrency 16 (bench/run.py).
CPU_BUDGET_MS = 0.30
RPS_TARGET = 3_500
CONCURRENCY = 16


def _rules(target: str) -> str:
    """Five content-aware rules for ``uniinfer/auto`` (scoped to it, as the config reference advises)."""
    auto = "model: uniinfer/auto"
    return f"""\
  rules:
    - {{name: images, when: {{has_images: true, {auto}}}, route: {{model: {target}}}}}
    - {{name: long, when: {{min_prompt_tokens: 20000, {auto}}}, route: {{model: {target}}}}}
    - {{name: code, when: {{task: code, {auto}}}, route: {{model: {target}}}}}
    - {{name: gold, when: {{headers: {{x-tier: gold}}, {auto}}}, route: {{model: {target}}}}}
    - {{name: default, when: {{{auto}}}, route: {{model: {target}}}}}
"""


def _group(name: str, deployments: int, strategy: str) -> str:
    deps = "\n".join(
        f"      - {{provider: mock, model: gpt-bench-{i}, weight: {i + 1}, rpm: 100000000,"
        f" input_cost_per_mtok: {i + 1}, output_cost_per_mtok: {i + 2}}}"
        for i in range(deployments)
    )
    return f"  {name}:\n    strategy: {strategy}\n    deployments:\n{deps}\n"


def config_text(groups: dict[str, tuple[int, str]], rules_to: str | None, upstream: str) -> str:
    """A config with the given groups (name -> deployments, strategy); ``rules_to``: where auto's rules go."""
    return (
        f"server: {{master_key: {MASTER_KEY}}}\n"
        f"providers:\n  mock: {{type: openai_compatible, api_key: sk-bench, base_url: '{upstream}'}}\n"
        "models:\n" + "".join(_group(name, n, s) for name, (n, s) in groups.items())
        + "routing:\n" + (_rules(rules_to) if rules_to else "  rules: []\n")
    )  # fmt: skip


def body_for(model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Write one sentence about the sea."},
            ],
            "temperature": 0.7,
            "max_tokens": 64,
        }
    )


#: (label, deployments, strategy, through uniinfer/auto)
CASES: list[tuple[str, int, str, bool]] = [
    ("1 deployment, priority", 1, "priority", False),
    *[(f"{DEPLOYMENTS} deployments, {s}", DEPLOYMENTS, s, False) for s in STRATEGIES],
    (f"uniinfer/auto, 5 rules -> {DEPLOYMENTS} deployments, weighted", DEPLOYMENTS, "weighted", True),
]


# --- in process -------------------------------------------------------------------------


def app_for(deployments: int, strategy: str, *, auto: bool = False) -> tuple[object, bytes]:
    text = config_text({"group": (deployments, strategy)}, "group" if auto else None, "http://127.0.0.1:9/v1")
    app = create_app(gateway=Gateway(parse_config(text, env={}), http=CannedHttp()))
    return app, body_for("uniinfer/auto" if auto else "group")


def measure(rounds: int = 30, requests: int = 2_000) -> dict[str, float]:
    """Best CPU µs per request of each case over ``rounds`` interleaved rounds (drift hits all alike)."""
    apps = {label: app_for(n, strategy, auto=auto) for label, n, strategy, auto in CASES}
    best = dict.fromkeys(apps, float("inf"))

    async def run() -> None:
        for app, body in apps.values():
            await _drive(app, _HEADERS, body, 2_000, 64)  # warm up
        for _ in range(rounds):
            for label, (app, body) in apps.items():
                best[label] = min(best[label], await _drive(app, _HEADERS, body, requests, 64))

    uvloop.run(run())
    return best


def report_in_process(best: dict[str, float]) -> None:
    base = best[CASES[0][0]]
    print("In process, upstream answered from memory:\n")
    print("| group | CPU µs per request (best of 30 interleaved rounds of 2,000) | over one deployment |")
    print("|---|---|---|")
    for label, value in best.items():
        delta = "-" if label == CASES[0][0] else f"{value - base:+.1f}"
        print(f"| {label} | {value:.1f} | {delta} |")


# --- served -----------------------------------------------------------------------------


def _served_groups() -> dict[str, tuple[int, str]]:
    return {f"case{i}": (n, strategy) for i, (_, n, strategy, auto) in enumerate(CASES) if not auto}


def measure_served(rounds: int, seconds: float, tool: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per case: CPU ms per request and req/s of each round, one ``uniinfer serve`` for all cases."""
    results: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, *_ in CASES}
    with tempfile.TemporaryDirectory(prefix="uniinfer-routing-") as tmp:
        work = Path(tmp)
        up_port, gw_port = free_port(), free_port()
        auto_to = next(f"case{i}" for i, (_, _, s, auto) in enumerate(CASES) if s == "weighted" and not auto)
        config = work / "config.yaml"
        config.write_text(config_text(_served_groups(), auto_to, f"http://127.0.0.1:{up_port}/v1"))
        bodies = {}
        for i, (label, _, _, auto) in enumerate(CASES):
            path = work / f"body{i}.json"
            path.write_bytes(body_for("uniinfer/auto" if auto else f"case{i}"))
            bodies[label] = path
        upstream = Server(
            "upstream", [sys.executable, str(ROOT / "bench/upstream.py"), "--port", str(up_port)],
            UPSTREAM_CORE, up_port, work / "upstream.log",
        )  # fmt: skip
        gateway = Server(
            "gateway",
            [str(ROOT / ".venv/bin/uniinfer"), "serve", "--config", str(config), "--port", str(gw_port),
             "--log-level", "warning"],
            GATEWAY_CORE, gw_port, work / "gateway.log",
        )  # fmt: skip
        try:
            upstream.start()
            upstream.wait_ready()
            gateway.start()
            gateway.wait_ready()
            for round_ in range(rounds + 1):
                order = CASES if round_ % 2 else CASES[::-1]
                for label, *_ in order:
                    result = run_phase(
                        Phase(
                            label=label,
                            url=f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                            body_file=bodies[label],
                            concurrency=CONCURRENCY,
                            duration=seconds if round_ else 1.0,
                            requests=1_000_000,
                            auth=MASTER_KEY,
                            tool=tool,
                            server_pid=gateway.pid,
                            server_core=GATEWAY_CORE,
                            quiet_core=GATEWAY_CORE,
                        )
                    )
                    if result.error_total:
                        raise RuntimeError(f"{label}: {result.error_total} failed requests ({result.errors})")
                    if round_:  # round 0 warms every case up
                        results[label][0].append(result.server_cpu_ms_per_req)
                        results[label][1].append(result.rps)
                print(f"round {round_} done", file=sys.stderr)
        finally:
            gateway.stop()
            upstream.stop()
    return results


def report_served(
    results: dict[str, tuple[list[float], list[float]]], rounds: int, seconds: float, tool: str
) -> None:
    base_cpu = statistics.median(results[CASES[0][0]][0])
    print(f"\nThrough `uniinfer serve`, 0 ms upstream, c={CONCURRENCY} ({tool}), median of {rounds} "
          f"interleaved rounds of {seconds:g} s:\n")  # fmt: skip
    print(f"| group | CPU ms per request (budget {CPU_BUDGET_MS:.2f}) | over one deployment "
          f"| req/s (target {RPS_TARGET:,}) | within budget |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, (cpu, rps) in results.items():
        c, r = statistics.median(cpu), statistics.median(rps)
        delta = "-" if label == CASES[0][0] else f"{(c - base_cpu) * 1000:+.1f} µs"
        ok = "yes" if c <= CPU_BUDGET_MS and r >= RPS_TARGET else "**no**"
        print(f"| {label} | {c:.3f} | {delta} | {r:,.0f} | {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("in-process", "served", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=5, help="served: rounds per case")
    parser.add_argument("--seconds", type=float, default=3.0, help="served: seconds per case and round")
    parser.add_argument("--tool", default="auto", choices=("auto", "wrk", "python"))
    args = parser.parse_args()
    if args.part in ("in-process", "both"):
        os.sched_setaffinity(0, {GATEWAY_CORE})
        report_in_process(measure())
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    if args.part in ("served", "both"):
        tool = detect_tool(args.tool)
        report_served(measure_served(args.rounds, args.seconds, tool), args.rounds, args.seconds, tool)


if __name__ == "__main__":
    main()

"""Routing overhead: what a five-deployment group costs over a one-deployment group.

The whole gateway app runs in process with the upstream answered from memory
(bench/micro.py's ``CannedHttp``), so the figures are the gateway's own CPU
per request; the difference between a group of five and a group of one is
what routing adds (strategy ordering, breaker and window bookkeeping), and
``uniinfer/auto`` with five rules adds the request analyser and rule matching.

Usage: ``uv run python bench/routing.py`` (pinned to core 0; best of 3 x 20k requests).
"""

from __future__ import annotations

import os

import orjson
import uvloop
from micro import _HEADERS, CannedHttp, _drive

from uniinfer.config import parse_config
from uniinfer.gateway import Gateway
from uniinfer.server import create_app

__all__ = ["main"]

DEPLOYMENTS = 5
RULES = """\
  rules:
    - {name: images, when: {has_images: true}, route: {model: group}}
    - {name: long, when: {min_prompt_tokens: 20000}, route: {model: group}}
    - {name: code, when: {task: code}, route: {model: group}}
    - {name: gold, when: {headers: {x-tier: gold}}, route: {model: group}}
    - {name: default, route: {model: group}}
"""


def config_text(deployments: int, strategy: str, rules: bool) -> str:
    deps = "\n".join(
        f"      - {{provider: mock, model: gpt-bench-{i}, weight: {i + 1}, rpm: 100000000,"
        f" input_cost_per_mtok: {i + 1}, output_cost_per_mtok: {i + 2}}}"
        for i in range(deployments)
    )
    return (
        "server: {master_key: sk-master}\n"
        "providers:\n  mock: {type: openai_compatible, api_key: sk-bench, base_url: 'http://127.0.0.1:9/v1'}\n"
        f"models:\n  group:\n    strategy: {strategy}\n    deployments:\n{deps}\n"
        "routing:\n" + (RULES if rules else "  rules: []\n")
    )


def app_for(deployments: int, strategy: str, *, auto: bool = False) -> tuple[object, bytes]:
    config = parse_config(config_text(deployments, strategy, auto), env={})
    app = create_app(gateway=Gateway(config, http=CannedHttp()))
    body = orjson.dumps(
        {
            "model": "uniinfer/auto" if auto else "group",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Write one sentence about the sea."},
            ],
            "temperature": 0.7,
            "max_tokens": 64,
        }
    )
    return app, body


CASES: list[tuple[str, int, str, bool]] = [
    ("1 deployment, priority", 1, "priority", False),
    *[
        (f"{DEPLOYMENTS} deployments, {s}", DEPLOYMENTS, s, False)
        for s in ("priority", "weighted", "least_inflight", "lowest_latency", "lowest_cost", "usage_headroom")
    ],
    (f"uniinfer/auto, 5 rules -> {DEPLOYMENTS} deployments, weighted", DEPLOYMENTS, "weighted", True),
]


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


def main() -> None:
    os.sched_setaffinity(0, {0})
    best = measure()
    base = best[CASES[0][0]]
    print("| group | CPU µs per request (best of 30 interleaved rounds of 2,000) | over one deployment |")
    print("|---|---|---|")
    for label, value in best.items():
        delta = "-" if label == CASES[0][0] else f"{value - base:+.1f}"
        print(f"| {label} | {value:.1f} | {delta} |")


if __name__ == "__main__":
    main()

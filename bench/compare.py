"""Before/after: the gateway of another commit against this tree, interleaved.

This VM's CPU speed drifts by about ±10 % within seconds, more than most
single changes to the hot path are worth. So both gateways (and the reference
proxy) run at the same time, all pinned to core 0 and loaded one at a time in
alternating short rounds; each is reported by its best and median CPU per
request over the rounds. The baseline runs from a git worktree of ``--base``
(``PYTHONPATH`` puts its ``src`` ahead of the installed package).

Usage::

    uv run python bench/compare.py [--base HEAD] [--rounds 5] [--seconds 3] [--concurrency 64] [--stream]

``--paced`` streams from the paced model (events 10 ms apart, starts
staggered as in bench/run.py) and also reports the time to first byte, the
figure that case is read for (use ``--seconds 8`` or more: a stream lasts
0.22 s).

Nothing is written outside a temporary directory; the worktree is removed at
the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from benchlib import ROOT, Server, free_port
from load import Phase, detect_tool, run_phase
from run import (
    CHAT_BODY,
    CONFIG,
    GATEWAY_CORE,
    MASTER_KEY,
    MODEL,
    PACED_BODY,
    PACED_STREAM_SECONDS,
    STREAM_BODY,
    UPSTREAM_CORE,
)

__all__ = ["main"]


def _gateway(name: str, config: Path, workdir: Path) -> Server:
    return Server(
        name,
        [sys.executable, "-c", "from uniinfer.cli import main; main()", "serve", "--config", str(config),
         "--port", str(free_port()), "--log-level", "warning"],
        GATEWAY_CORE, 0, workdir / f"{name}.log",
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare against (default HEAD)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--stream", action="store_true", help="SSE streams instead of JSON answers")
    parser.add_argument("--paced", action="store_true", help="paced streams, staggered; TTFB reported too")
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0)
    parser.add_argument("--tool", default="auto", choices=("auto", "wrk", "python"))
    args = parser.parse_args()
    args.stream = args.stream or args.paced
    tool = "python" if args.stream else detect_tool(args.tool)

    with tempfile.TemporaryDirectory(prefix="uniinfer-compare-") as tmp:
        work = Path(tmp)
        tree = work / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.base],
                       check=True, capture_output=True)  # fmt: skip
        up_port = free_port()
        config = work / "config.yaml"
        config.write_text(CONFIG.format(key=MASTER_KEY, upstream=up_port, model=MODEL))
        body = work / "body.json"
        body.write_bytes(
            orjson.dumps(PACED_BODY if args.paced else STREAM_BODY if args.stream else CHAT_BODY)
        )
        upstream = Server(
            "upstream",
            [sys.executable, str(ROOT / "bench/upstream.py"), "--port", str(up_port),
             "--delay-ms", str(args.upstream_delay_ms)],
            UPSTREAM_CORE, up_port, work / "upstream.log",
        )  # fmt: skip
        base, this = _gateway("base", config, work), _gateway("this", config, work)
        for server in (base, this):
            server.port = int(server.argv[server.argv.index("--port") + 1])
        servers = (upstream, base, this)
        try:
            upstream.start()
            upstream.wait_ready()
            base.start(env={**os.environ, "PYTHONPATH": str(tree / "src")})
            this.start(env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            base.wait_ready()
            this.wait_ready()
            cpu: dict[str, list[float]] = {"base": [], "this": []}
            p50: dict[str, list[float]] = {"base": [], "this": []}
            ttfb: dict[str, list[float]] = {"base": [], "this": []}
            for round_ in range(args.rounds + 1):
                for server in (base, this) if round_ % 2 else (this, base):
                    phase = Phase(
                        label=server.name,
                        url=f"http://127.0.0.1:{server.port}/v1/chat/completions",
                        body_file=body,
                        concurrency=args.concurrency,
                        duration=args.seconds if round_ else 1.0,
                        requests=1_000_000,
                        auth=MASTER_KEY,
                        tool=tool,
                        server_pid=server.pid,
                        server_core=GATEWAY_CORE,
                        stream=args.stream,
                        quiet_core=GATEWAY_CORE,
                        stagger=PACED_STREAM_SECONDS if args.paced else 0.0,
                    )
                    result = run_phase(phase)
                    if result.error_total:
                        print(f"{server.name}: {result.error_total} errors", file=sys.stderr)
                        return 1
                    if round_:  # round 0 warms both up
                        cpu[server.name].append(result.server_cpu_ms_per_req * 1000)
                        p50[server.name].append(result.p50_ms)
                        ttfb[server.name].append(result.ttfb_p50_ms or 0.0)
                print(f"round {round_}: " + "  ".join(f"{k} {v[-1]:.1f} µs" for k, v in cpu.items() if v))
        finally:
            for server in servers:
                server.stop()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    unit = "stream" if args.stream else "request"
    print(f"\nCPU µs per {unit}, c={args.concurrency}, {args.rounds} rounds of {args.seconds:g} s ({tool}):")
    for name in ("base", "this"):
        print(f"  {name} ({args.base if name == 'base' else 'working tree'}): best {min(cpu[name]):.1f}, "
              f"median {statistics.median(cpu[name]):.1f}, p50 latency median "
              f"{statistics.median(p50[name]):.2f} ms"
              + (f", TTFB p50 median {statistics.median(ttfb[name]):.3f} ms" if args.stream else ""))  # fmt: skip
    ratios = sorted(b / a - 1 for a, b in zip(cpu["base"], cpu["this"], strict=True))
    print(
        f"  this / base, median of per-round ratios: {statistics.median(ratios):+.1%} "
        f"(rounds from {ratios[0]:+.1%} to {ratios[-1]:+.1%}; a run is good to about ±5 points here)"
    )
    if args.stream:
        diffs = sorted(b - a for a, b in zip(ttfb["base"], ttfb["this"], strict=True))
        print(f"  TTFB p50, this - base, median of per-round differences: {statistics.median(diffs) * 1000:+.0f} µs "
              f"(rounds from {diffs[0] * 1000:+.0f} to {diffs[-1] * 1000:+.0f} µs)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

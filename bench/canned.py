"""The gateway's own cost per request in a real server, with the upstream call taken out.

Serves ``POST /v1/chat/completions`` on uvicorn (uvloop + httptools, as
``uniinfer serve``) pinned to core 0, with the upstream answered from memory:

- ``gateway``: the real ``App`` over a real ``Gateway`` whose HTTP client
  returns the fake upstream's canned body (validation, routing, stages,
  response model, headers: everything but the socket to the provider);
- ``reference``: bench/refproxy.py's app with a canned session (orjson in and
  out, one header).

Both are loaded alternately (``--rounds``) at concurrency 64 from core 1; the
table gives req/s and server CPU per request (best round). The difference is
what the gateway's request handling costs above a minimal ASGI handler, with
no aiohttp and no upstream involved.

Usage: ``uv run python bench/canned.py [--duration 6] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson
import uvicorn
from benchlib import ROOT, Server, free_port
from load import Phase, PhaseResult, detect_tool, run_phase
from micro import CannedSession, canned_gateway_app
from refproxy import make_app
from run import CHAT_BODY, MASTER_KEY

__all__ = ["main"]

MODES = ("gateway", "reference")


def serve(mode: str, port: int) -> None:
    app = (
        canned_gateway_app()
        if mode == "gateway"
        else make_app("http://127.0.0.1:9/v1", "sk-bench", session_factory=CannedSession)
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


def _measure(mode: str, body: Path, tool: str, duration: float, workdir: Path) -> PhaseResult:
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "canned.py"), "--serve", mode, "--port", str(port)]
    server = Server(mode, argv, 0, port, workdir / f"{mode}.log")
    try:
        server.start()
        server.wait_ready()
        url = f"http://127.0.0.1:{port}/v1/chat/completions"

        def phase(seconds: float) -> Phase:
            return Phase(
                label=mode,
                url=url,
                body_file=body,
                concurrency=64,
                duration=seconds,
                requests=10_000_000,
                auth=MASTER_KEY,
                tool=tool,
                server_pid=server.pid,
                server_core=0,
            )

        run_phase(phase(2.0))  # warm-up
        return run_phase(phase(duration))
    finally:
        server.stop()


def compare(duration: float, rounds: int, tool: str) -> None:
    best: dict[str, PhaseResult] = {}
    with tempfile.TemporaryDirectory(prefix="uniinfer-canned-") as tmp:
        body = Path(tmp) / "body.json"
        body.write_bytes(orjson.dumps(CHAT_BODY))
        for _ in range(rounds):
            for mode in MODES:
                result = _measure(mode, body, tool, duration, Path(tmp))
                print(
                    f"  {mode:<10} {result.rps:>9.1f} req/s  cpu {result.server_cpu_ms_per_req * 1000:.1f} µs/req"
                )
                if result.error_total:
                    raise SystemExit(f"{mode}: {result.error_total} failed requests")
                if mode not in best or result.server_cpu_ms_per_req < best[mode].server_cpu_ms_per_req:
                    best[mode] = result
    print(f"\n| canned upstream, c=64, {tool}, best of {rounds} | req/s | server CPU µs/req |\n|---|---|---|")
    for mode in MODES:
        r = best[mode]
        print(f"| {mode} | {r.rps:,.0f} | {r.server_cpu_ms_per_req * 1000:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", choices=MODES, help="run one server (used by the comparison itself)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    a = p.parse_args()
    if a.serve:
        serve(a.serve, a.port)
    else:
        compare(a.duration, a.rounds, detect_tool(a.tool))


if __name__ == "__main__":
    main()

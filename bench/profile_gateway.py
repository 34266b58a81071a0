"""Where the gateway spends its CPU under load: cProfile of ``uniinfer serve``.

Starts the fake upstream and the gateway as bench/run.py does, but the gateway
runs under ``python -m cProfile``; after a bounded load run (non-streaming by
default, ``--stream`` for SSE) the gateway is stopped by PID with SIGTERM,
SIGINT, after which cProfile writes its file; the top functions by own time and by
cumulative time are printed, as a share of the profiled CPU time.

cProfile slows every Python call, so absolute figures are inflated; the
shares are what to read. Usage::

    uv run python bench/profile_gateway.py [--duration 10] [--stream] [--top 30]
"""

from __future__ import annotations

import argparse
import io
import pstats
import signal
import sys
import tempfile
from pathlib import Path

from benchlib import ROOT
from run import Bench, parse_args

__all__ = ["main"]


def _profiled_argv(argv: list[str], out: Path) -> list[str]:
    """``uniinfer serve ...`` under cProfile (the executable is a Python script)."""
    return [sys.executable, "-m", "cProfile", "-o", str(out), *argv]


def _report(path: Path, top: int) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    total = stats.total_tt  # type: ignore[attr-defined]
    buf.write(f"total profiled time: {total:.2f} s\n")
    for key in ("tottime", "cumulative"):
        buf.write(f"\n=== top {top} by {key} ===\n")
        stats.sort_stats(key).print_stats(top)
    return buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "gateway.prof")
    a = p.parse_args()
    opts = parse_args(
        ["--duration", str(a.duration), "--concurrency", str(a.concurrency), "--wait-quiet", "0"]
    )
    with tempfile.TemporaryDirectory(prefix="uniinfer-profile-") as tmp:
        bench = Bench(opts, Path(tmp))
        bench.gateway.argv = _profiled_argv(bench.gateway.argv, a.output)
        try:
            bench.upstream.start()
            bench.upstream.wait_ready()
            bench.gateway.start()
            bench.gateway.wait_ready()
            bench.measure("gateway (profiled)", bench.gateway, a.concurrency, stream=a.stream)
        finally:
            # uvicorn re-raises the signal after its shutdown: SIGINT becomes a
            # KeyboardInterrupt, during which cProfile still writes its file.
            bench.gateway.stop(grace=60, sig=signal.SIGINT)
            bench.upstream.stop()
    print(_report(a.output, a.top))
    print(f"profile written to {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

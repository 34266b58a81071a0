"""Running one bounded load phase with wrk or the Python load generator, on core 1.

Both tools print one ``BENCH_JSON {...}`` line (wrk through ``wrk_post.lua``,
the Python tool natively); :func:`run_phase` parses it and, around the run,
reads the CPU time of the server under test from /proc and the busy time of
core 0 from /proc/stat, so each result also says how much of the gateway's
core other processes took (this machine is shared).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from benchlib import CLK_TCK, ROOT, core_times, proc_cpu_seconds

__all__ = ["LOADGEN_CORE", "Phase", "PhaseResult", "detect_tool", "run_phase"]

LOADGEN_CORE = 1
_WRK_LUA = ROOT / "bench" / "wrk_post.lua"
_LOADGEN = ROOT / "bench" / "loadgen.py"


def detect_tool(preferred: str) -> str:
    """``wrk`` when asked for (or ``auto``) and installed, else ``python``."""
    if preferred == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if preferred == "wrk":
        print("wrk is not installed (apt-get install -y wrk); falling back to the Python load generator")
    return "python"


@dataclass(frozen=True)
class Phase:
    """One load run: where to send what, how hard, and for how long at most."""

    label: str
    url: str
    body_file: Path
    concurrency: int
    duration: float
    requests: int
    auth: str | None
    tool: str
    server_pid: int
    server_core: int
    stream: bool = False
    #: The core that should be ours alone (the gateway's); busy time there from
    #: other processes is reported as contention.
    quiet_core: int = 0
    #: Seconds over which the connections' first requests are spread (Python load generator).
    stagger: float = 0.0


@dataclass
class PhaseResult:
    label: str
    tool: str
    concurrency: int
    requests: int
    duration_s: float
    rps: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    error_total: int
    server_cpu_ms_per_req: float
    server_core_busy_pct: float
    #: Share of the quiet core (core 0) used by processes other than the server under test.
    others_on_core0_pct: float
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    events_per_s: float | None = None
    repeats: list[dict[str, float]] = field(default_factory=list)
    #: Runs thrown away because other processes used core 0 (see bench/run.py --max-contention).
    discarded_contended: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wrk_argv(phase: Phase) -> list[str]:
    seconds = max(1, round(phase.duration))
    return [
        "wrk", "-t1", f"-c{phase.concurrency}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(_WRK_LUA), phase.url,
    ]  # fmt: skip


def _python_argv(phase: Phase) -> list[str]:
    argv = [
        sys.executable, str(_LOADGEN), "--url", phase.url, "--body-file", str(phase.body_file),
        "--concurrency", str(phase.concurrency), "--duration", str(phase.duration),
        "--requests", str(phase.requests),
    ]  # fmt: skip
    if phase.auth:
        argv += ["--auth", phase.auth]
    if phase.stagger:
        argv += ["--stagger", str(phase.stagger)]
    return argv


def _invoke(phase: Phase) -> dict[str, Any]:
    tool = "python" if phase.stream else phase.tool  # wrk cannot time the first byte
    argv = _wrk_argv(phase) if tool == "wrk" else _python_argv(phase)
    env = {**os.environ, "BENCH_BODY_FILE": str(phase.body_file), "BENCH_AUTH": phase.auth or ""}
    out = subprocess.run(
        ["taskset", "-c", str(LOADGEN_CORE), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=phase.duration + 120,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data: dict[str, Any] = orjson.loads(line[len("BENCH_JSON ") :])
            data["tool"] = tool
            return data
    raise RuntimeError(f"{tool} printed no result (exit {out.returncode}): {out.stderr.strip()[-2000:]}")


def run_phase(phase: Phase) -> PhaseResult:
    """Run ``phase`` and measure the server under test around it."""
    cpu0 = proc_cpu_seconds(phase.server_pid)
    server0, quiet0 = core_times(phase.server_core), core_times(phase.quiet_core)
    raw = _invoke(phase)
    cpu1 = proc_cpu_seconds(phase.server_pid)
    server1, quiet1 = core_times(phase.server_core), core_times(phase.quiet_core)
    result = _result(phase, raw, cpu1 - cpu0, server1.busy - server0.busy, server1.total - server0.total)
    ours = (cpu1 - cpu0) * CLK_TCK if phase.server_core == phase.quiet_core else 0.0
    others = quiet1.busy - quiet0.busy - ours
    result.others_on_core0_pct = round(max(0.0, 100 * others / max(quiet1.total - quiet0.total, 1)), 1)
    return result


def _result(phase: Phase, raw: dict[str, Any], cpu_s: float, busy: int, total: int) -> PhaseResult:
    done = int(raw["requests"])
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = {k: int(v) for k, v in raw["errors"].items()}
    total = max(total, 1)
    result = PhaseResult(
        label=phase.label,
        tool=raw["tool"],
        concurrency=phase.concurrency,
        requests=done,
        duration_s=round(seconds, 3),
        rps=round(done / seconds, 1) if seconds else 0.0,
        mean_ms=round(lat["mean"] / 1000, 3),
        p50_ms=round(lat["p50"] / 1000, 3),
        p90_ms=round(lat["p90"] / 1000, 3),
        p99_ms=round(lat["p99"] / 1000, 3),
        max_ms=round(lat["max"] / 1000, 3),
        errors=errors,
        error_total=sum(errors.values()),
        server_cpu_ms_per_req=round(cpu_s * 1000 / done, 4) if done else 0.0,
        server_core_busy_pct=round(100 * busy / total, 1),
        others_on_core0_pct=0.0,
    )
    if phase.stream:
        result.ttfb_p50_ms = round(raw["ttfb_us"]["p50"] / 1000, 3)
        result.ttfb_p99_ms = round(raw["ttfb_us"]["p99"] / 1000, 3)
        result.events_per_s = round(raw["events"] / seconds, 1) if seconds else 0.0
    return result

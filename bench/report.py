"""Targets and the Markdown report of a benchmark run (see docs/benchmarks.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Target", "evaluate_targets", "markdown"]


@dataclass(frozen=True)
class Target:
    metric: str
    goal: str
    measured: float | None
    unit: str
    ok: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "goal": self.goal,
            "measured": self.measured,
            "unit": self.unit,
            "ok": self.ok,
        }


def _run(results: dict[str, Any], label: str) -> dict[str, Any] | None:
    for run in results.get("runs", []):
        if run["label"] == label:
            return dict(run)
    return None


def _check(metric: str, goal: str, value: float | None, unit: str, limit: float, *, at_least: bool) -> Target:
    if value is None:
        return Target(metric, goal, None, unit, None)
    ok = value >= limit if at_least else value <= limit
    return Target(metric, goal, round(value, 3), unit, ok)


def _diff(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    return None if a is None or b is None else float(a[key]) - float(b[key])


def _cold(results: dict[str, Any], key: str) -> float | None:
    value = results.get("cold_start", {}).get(key, {}).get("median_s")
    return None if value is None else float(value)


def _stream(results: dict[str, Any], label: str) -> dict[str, Any] | None:
    for run in results.get("stream_runs", []):
        if run["label"] == label:
            return dict(run)
    return None


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    return None if a is None or b is None or not b[key] else float(a[key]) / float(b[key])


def evaluate_targets(results: dict[str, Any]) -> list[Target]:
    """The issue's targets, in its words, against this run's figures."""
    opts = results.get("options", {})
    c, slow, sc = (int(opts.get(k, d)) for k, d in
                   (("concurrency", 16), ("slow_concurrency", 128), ("stream_concurrency", 16)))  # fmt: skip
    gw, gw1, direct1 = (
        _run(results, f"gateway c={c}"),
        _run(results, "gateway c=1"),
        _run(results, "direct c=1"),
    )
    gw_slow, direct_slow = _run(results, f"gateway slow c={slow}"), _run(results, f"direct slow c={slow}")
    rss = results.get("gateway_memory", {}).get("rss_mb")
    package = results.get("import", {}).get("as_is", {}).get("package_wall_s")
    targets = [
        _check(f"0 ms upstream, c={c}: gateway throughput on 1 core", ">= 3500",
               gw["rps"] if gw else None, "req/s", 3500, at_least=True),
        _check(f"0 ms upstream, c={c}: gateway CPU per request", "<= 0.30",
               gw["server_cpu_ms_per_req"] if gw else None, "ms", 0.30, at_least=False),
        _check("c=1: added p50 latency", "<= 0.6", _diff(gw1, direct1, "p50_ms"), "ms", 0.6, at_least=False),
        _check(f"50 ms upstream, c={slow}: added p50 latency", "<= 1.0",
               _diff(gw_slow, direct_slow, "p50_ms"), "ms", 1.0, at_least=False),
        _check(f"50 ms upstream, c={slow}: added p99 latency", "<= 10",
               _diff(gw_slow, direct_slow, "p99_ms"), "ms", 10.0, at_least=False),
    ]  # fmt: skip
    for kind, label in (
        ("", "instant upstream"),
        ("paced staggered ", "paced upstream, 10 ms between events, starts staggered"),
    ):
        gws, direct = (
            _stream(results, f"gateway {kind}stream c={sc}"),
            _stream(results, f"direct {kind}stream c={sc}"),
        )
        targets += [
            _check(f"streaming ({label}), c={sc}: added TTFB p50", "<= 0.5",
                   _diff(gws, direct, "ttfb_p50_ms"), "ms", 0.5, at_least=False),
            _check(f"streaming ({label}), c={sc}: streams/s of direct's", ">= 0.90",
                   _ratio(gws, direct, "rps"), "x", 0.90, at_least=True),
        ]  # fmt: skip
    targets += [
        _check("RSS after the run", "<= 100", rss, "MB", 100, at_least=False),
        _check("cold start to the first completion, bytecode cached", "<= 0.5",
               _cold(results, "venv_exe_bytecode_cache"), "s", 0.5, at_least=False),
        _check("cold start to the first completion, as is (only the .pyc files the install wrote)", "<= 0.5",
               _cold(results, "venv_exe_as_is"), "s", 0.5, at_least=False),
        _check("import uniinfer, as is", "<= 0.150", package, "s", 0.150, at_least=False),
    ]  # fmt: skip
    return targets


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _targets_md(targets: list[Target]) -> str:
    status = {True: "met", False: "**MISSED**", None: "not measured"}
    rows = [[t.metric, f"{t.goal} {t.unit}", f"{_fmt(t.measured)} {t.unit}", status[t.ok]] for t in targets]
    return _table(["metric", "target", "measured", "status"], rows)


def _runs_md(results: dict[str, Any]) -> str:
    header = [
        "run", "tool", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors",
        "server CPU ms/req", "server core busy %", "others on core 0 %", "req/s of repeats", "discarded (contended)",
    ]  # fmt: skip
    rows = [
        [
            r["label"],
            r["tool"],
            r["rps"],
            r["p50_ms"],
            r["p90_ms"],
            r["p99_ms"],
            r["error_total"],
            r["server_cpu_ms_per_req"],
            r["server_core_busy_pct"],
            r["others_on_core0_pct"],
            " / ".join(f"{x['rps']:.0f}" for x in r.get("repeats", [])),
            r.get("discarded_contended", 0),
        ]
        for r in results.get("runs", [])
    ]
    return _table(header, rows)


def _stream_md(results: dict[str, Any]) -> str:
    header = [
        "run",
        "streams/s",
        "TTFB p50 ms",
        "TTFB p99 ms",
        "total p50 ms",
        "SSE events/s",
        "errors",
        "server CPU ms/stream",
    ]
    rows = [
        [
            r["label"],
            r["rps"],
            r["ttfb_p50_ms"],
            r["ttfb_p99_ms"],
            r["p50_ms"],
            r["events_per_s"],
            r["error_total"],
            r["server_cpu_ms_per_req"],
        ]
        for r in results.get("stream_runs", [])
    ]
    return _table(header, rows)


def _latency_md(results: dict[str, Any]) -> str:
    rows = []
    for run in results.get("runs", []):
        if not run["label"].startswith("direct "):
            continue
        case = run["label"].removeprefix("direct ")  # "c=16", "slow c=128"
        direct, gateway = run, _run(results, f"gateway {case}")
        reference = _run(results, f"reference {case}")
        rows.append(
            [
                case,
                _diff(gateway, direct, "p50_ms"),
                _diff(gateway, direct, "p99_ms"),
                _diff(reference, direct, "p50_ms"),
                _diff(reference, direct, "p99_ms"),
            ]
        )
    header = [
        "case",
        "gateway added p50 ms",
        "gateway added p99 ms",
        "reference added p50 ms",
        "reference added p99 ms",
    ]
    return _table(header, rows)


def _startup_md(results: dict[str, Any]) -> str:
    cold, imp = results.get("cold_start", {}), results.get("import", {})
    rows: list[list[Any]] = []
    for mode, label in (("bytecode_cache", "bytecode cached"), ("as_is", "as is")):
        exe, uv, im = cold.get(f"venv_exe_{mode}", {}), cold.get(f"uv_run_{mode}", {}), imp.get(mode, {})
        rows += [
            [
                f"cold start, .venv/bin/uniinfer ({label})",
                exe.get("median_s"),
                exe.get("cpu_s"),
                exe.get("all_s"),
            ],
            [f"cold start, uv run uniinfer ({label})", uv.get("median_s"), None, uv.get("all_s")],
            [
                f"import uniinfer.server.app ({label})",
                im.get("import_wall_s"),
                im.get("import_cpu_s"),
                im.get("import_wall_all_s"),
            ],
            [f"import uniinfer ({label})", im.get("package_wall_s"), None, ""],
            [f"bare interpreter, python -c pass ({label})", im.get("python_bare_wall_s"), None, ""],
        ]
    return _table(["measure (median)", "wall s", "CPU s", "samples, wall s"], rows)


def _imports_md(results: dict[str, Any]) -> str:
    top = results.get("import", {}).get("bytecode_cache", {}).get("top_modules", [])
    rows = [[row["module"], row["cumulative_ms"], row["self_ms"]] for row in top]
    return _table(["module (python -X importtime, bytecode cached)", "cumulative ms", "self ms"], rows)


def _memory_md(results: dict[str, Any]) -> str:
    rows = []
    for name in ("gateway", "reference"):
        mem = results.get(f"{name}_memory")
        if mem:
            rows.append([name, mem["rss_mb"], mem["hwm_mb"]])
    return _table(["process", "VmRSS after load MB", "VmHWM (peak) MB"], rows)


def markdown(results: dict[str, Any], targets: list[Target]) -> str:
    m = results["machine"]
    parts = [
        f"## uniinfer benchmark ({m['date']})",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}; "
        f"load tool: {m['load_tool']} ({m['wrk']}); load average before: {' '.join(m['loadavg_before'])}; "
        f"busy CPU before start: {m.get('busy_pct_before', '-')} %; "
        f"source fingerprint (sha256 of src/uniinfer/**/*.py): {m.get('source_sha256_12', '-')}.",
        "### Targets",
        _targets_md(targets),
        "### Non-streaming runs",
        _runs_md(results),
        "### Added latency",
        _latency_md(results),
        "### Streaming",
        _stream_md(results),
        "### Memory",
        _memory_md(results),
        "### Start-up",
        _startup_md(results),
        _imports_md(results),
    ]
    return "\n\n".join(parts) + "\n"

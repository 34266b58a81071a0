"""Start-up costs: import time of the server module and cold start to the first completion.

Cold start is the wall time from spawning ``uniinfer serve`` to the first
successful chat completion (``POST /v1/chat/completions`` answered 200 through
the fake upstream, tried every 2 ms over fresh connections until the port
answers), with the process pinned to the gateway core. It is measured with the venv's
``uniinfer`` executable (what a container would run) and, for reference, via
``uv run`` (which adds uv's own environment check).

Both are measured in two bytecode situations, because they differ by a
factor of two:

- ``as_is``: the environment as it is. Here ``PYTHONDONTWRITEBYTECODE=1`` is
  set, so whatever has no ``.pyc`` compiles at every start: the ~250 modules
  of the dependencies unless the venv was synced with
  ``uv sync --compile-bytecode``, and uniinfer's own (an editable install)
  unless ``python -m compileall src/uniinfer`` ran; ``./dev serve`` does
  both before it starts the gateway;
- ``bytecode_cache``: ``PYTHONPYCACHEPREFIX`` points at a private temporary
  directory (primed by one untimed start), which is what an image built with
  ``uv sync --compile-bytecode`` (or pip's default) gets. Nothing is written
  into the repository or the venv.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from benchlib import ROOT, Server, free_port, proc_cpu_seconds, wait_for_completion

__all__ = ["cold_start", "import_costs"]

_IMPORT = "import uniinfer.server.app"


def bytecode_env(pyc_dir: Path | None) -> dict[str, str]:
    """The environment for a mode: as it is, or with a private bytecode cache."""
    env = dict(os.environ)
    if pyc_dir is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pyc_dir)
    return env


def _modes(pyc_dir: Path) -> dict[str, Path | None]:
    return {"as_is": None, "bytecode_cache": pyc_dir}


def _median(values: Iterable[float]) -> float:
    return round(statistics.median(list(values)), 4)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], env: dict[str, str], core: int) -> tuple[float, float]:
    """(wall, user+system CPU) seconds of running ``argv`` to completion on ``core``."""
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run(
        ["taskset", "-c", str(core), *argv], check=True, cwd=ROOT, capture_output=True, env=env, timeout=60
    )
    return time.perf_counter() - started, _children_cpu() - cpu


def _importtime_top(n: int, env: dict[str, str]) -> list[dict[str, object]]:
    """The ``n`` modules with the largest cumulative import time (``python -X importtime``)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _IMPORT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    rows: list[tuple[int, int, str]] = []
    for line in out.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue  # the header line
        rows.append((int(fields[1]), int(fields[0]), fields[2].strip()))
    rows.sort(reverse=True)
    top = {name: (cum, own) for cum, own, name in reversed(rows[: n + 1])}  # the -c import is listed twice
    ordered = sorted(top.items(), key=lambda item: item[1], reverse=True)[:n]
    return [
        {"module": name, "cumulative_ms": round(cum / 1000, 1), "self_ms": round(own / 1000, 1)}
        for name, (cum, own) in ordered
    ]


def _import_mode(samples: int, env: dict[str, str], core: int) -> dict[str, object]:
    python = sys.executable
    _timed([python, "-c", _IMPORT], env, core)  # primes the cache in bytecode_cache mode
    bare = [_timed([python, "-c", "pass"], env, core) for _ in range(samples)]
    full = [_timed([python, "-c", _IMPORT], env, core) for _ in range(samples)]
    package = [_timed([python, "-c", "import uniinfer"], env, core) for _ in range(samples)]
    return {
        "python_bare_wall_s": _median(w for w, _ in bare),
        "package_wall_s": _median(w for w, _ in package),
        "import_wall_s": _median(w for w, _ in full),
        "import_cpu_s": _median(c for _, c in full),
        "import_wall_all_s": [round(w, 4) for w, _ in full],
        "top_modules": _importtime_top(16, env),
    }


def import_costs(samples: int, core: int, pyc_dir: Path) -> dict[str, object]:
    """Median wall and CPU time of ``python -c 'import uniinfer.server.app'``, per bytecode mode.

    CPU time is the better figure on a shared machine: wall time also counts
    the time the process waited for a core.
    """
    result: dict[str, object] = {"samples": samples}
    for mode, cache in _modes(pyc_dir).items():
        result[mode] = _import_mode(samples, bytecode_env(cache), core)
    return result


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _stop_tree(server: Server) -> None:
    """Stop ``uv run``'s child (the gateway) by its PID first, then uv itself."""
    proc = server.proc
    if proc is not None and proc.poll() is None:
        for child in _children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
    server.stop()


def _one_cold_start(
    argv: list[str], core: int, log_dir: Path, env: dict[str, str], first: tuple[bytes, str]
) -> tuple[float, float]:
    """(spawn-to-first-completion seconds, CPU seconds the server used by then; 0 when it is uv's child)."""
    port = free_port()
    server = Server("cold", [*argv, "--port", str(port)], core, port, log_dir / "coldstart.log")
    try:
        spawned = server.start(env)
        assert server.proc is not None
        ready = wait_for_completion(port, server.proc, *first, timeout=30)
        cpu = 0.0 if _children(server.pid) else proc_cpu_seconds(server.pid)
        return ready - spawned, cpu
    finally:
        _stop_tree(server)


def cold_start(
    config: Path, core: int, samples: int, log_dir: Path, pyc_dir: Path, first: tuple[bytes, str]
) -> dict[str, object]:
    """Median spawn-to-first-completion time: venv executable and ``uv run``, per bytecode mode.

    ``first``: the request body and the master key of the completion to wait for
    (the upstream it is routed to must be running). The variants take turns,
    one start each per round, so a slow spell of the VM does not fall on one of them.
    """
    exe = ROOT / ".venv" / "bin" / "uniinfer"
    direct = [str(exe), "serve", "--config", str(config), "--log-level", "warning"]
    uv = shutil.which("uv")
    variants: dict[str, tuple[list[str], dict[str, str]]] = {}
    for mode, cache in _modes(pyc_dir).items():
        env = bytecode_env(cache)
        variants[f"venv_exe_{mode}"] = (direct, env)
        if uv:
            variants[f"uv_run_{mode}"] = ([uv, "run", "--no-sync", "uniinfer", *direct[1:]], env)
    for argv, env in variants.values():
        _one_cold_start(argv, core, log_dir, env, first)  # primes the cache in bytecode_cache mode
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(samples):
        for name, (argv, env) in variants.items():
            runs[name].append(_one_cold_start(argv, core, log_dir, env, first))
    result: dict[str, object] = {"samples": samples}
    for name, timed in runs.items():
        entry: dict[str, object] = {"median_s": _median(w for w, _ in timed)}
        if name.startswith("venv_exe_"):  # a uv run's PID is uv's, not the gateway's
            entry["cpu_s"] = _median(c for _, c in timed)
        entry["all_s"] = [round(w, 4) for w, _ in timed]
        result[name] = entry
    return result

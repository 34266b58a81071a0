"""Helpers for bench/run.py: processes pinned to a core, readiness probes, /proc readers.

Every process is started by us, pinned with ``taskset -c CORE`` (which execs
the command, so the PID we hold is the server's own), and stopped by that PID
with SIGTERM, then SIGKILL after a grace period. Nothing here talks to any
host but 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

__all__ = [
    "CLK_TCK",
    "ROOT",
    "CoreTimes",
    "Server",
    "core_times",
    "fake_upstream",
    "free_port",
    "http_status",
    "machine_info",
    "proc_cpu_seconds",
    "proc_rss_kb",
    "source_fingerprint",
    "wait_for_200",
    "wait_for_completion",
]

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(port: int, path: str = "/health", timeout: float = 1.0) -> int | None:
    """Status of ``GET path`` on 127.0.0.1:port, or None if nothing answers."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def completion_status(port: int, body: bytes, key: str, timeout: float = 2.0) -> int | None:
    """Status of one ``POST /v1/chat/completions`` on 127.0.0.1:port, or None if nothing answers."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(head + body)
            first = sock.recv(64)
    except OSError:
        return None
    parts = first.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def wait_for_completion(
    port: int, proc: subprocess.Popen[bytes], body: bytes, key: str, timeout: float
) -> float:
    """Poll until a chat completion answers 200; return the perf_counter time it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before it answered")
        status = completion_status(port, body, key)
        if status == 200:
            return time.perf_counter()
        if status is not None:
            raise RuntimeError(f"the first completion answered {status}")
        time.sleep(0.002)
    raise TimeoutError(f"no completion answered 200 on 127.0.0.1:{port} within {timeout} s")


def wait_for_200(port: int, proc: subprocess.Popen[bytes], timeout: float, path: str = "/health") -> float:
    """Poll until ``GET path`` answers 200; return the perf_counter time it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before it was ready")
        if http_status(port, path) == 200:
            return time.perf_counter()
        time.sleep(0.002)
    raise TimeoutError(f"nothing answered 200 on 127.0.0.1:{port}{path} within {timeout} s")


@dataclass
class Server:
    """A server process we started, pinned to one core; stop() ends it by PID."""

    name: str
    argv: list[str]
    core: int
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> float:
        """Spawn the process; return the perf_counter time just before the spawn."""
        self._log = self.log_path.open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(self.core), *self.argv],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        return started

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for the first 200 on /health; on failure the error carries the log's tail."""
        assert self.proc is not None
        try:
            return wait_for_200(self.port, self.proc, timeout)
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.is_file() else ""
            raise RuntimeError(f"{self.name} did not become ready: {exc}\n{tail}") from exc

    def stop(self, grace: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` to our PID; SIGKILL it if it has not exited after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace)
        if self._log is not None:
            self._log.close()
            self._log = None


def fake_upstream(core: int = 1, log: Path | None = None) -> Server:
    """bench/upstream.py on a free port, pinned to ``core`` (not started)."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench/upstream.py"), "--port", str(port)]
    return Server("upstream", argv, core, port, log or Path(os.devnull))


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # the fields after "(comm) "


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in kB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


@dataclass(frozen=True)
class CoreTimes:
    """Busy and total jiffies of one CPU from /proc/stat."""

    busy: int
    total: int


def core_times(core: int) -> CoreTimes:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            return CoreTimes(busy=sum(values) - idle, total=sum(values))
    raise ValueError(f"no cpu{core} in /proc/stat")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "absent"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def source_fingerprint() -> str:
    """A short hash of src/uniinfer/**/*.py: which code the figures belong to (the tree changes)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "uniinfer").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info(load_tool: str) -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "source_sha256_12": source_fingerprint(),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "load_tool": load_tool,
        "wrk": _tool_version(["wrk", "--version"]) if load_tool == "wrk" else "not used",
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }

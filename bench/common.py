"""Shared helpers: modes, timing statistics, machine facts, configs, processes, /proc.

Nothing here imports the agent or pyarrow at module level, so the helpers stay
cheap to import in worker processes whose memory is being measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.children import agent_env as env
from tests.tomltext import toml_text  # shared with the tests' config writer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Mode:
    """Sizes of one bench mode; full and quick differ only in these numbers."""

    name: str
    runs: int
    # 1. triggers
    batch_rows: int  # rows per operation, in 1,000-row transactions
    single_commits: int  # single-row commits per operation
    # 2. capture
    capture_changes: int
    capture_tables: int
    profile_changes: int
    # 3. peer (dlt)
    peer_rows: int
    # 4. memory
    burst_changes: int
    # 5. latency
    latency_commits: int
    stream_seconds: float
    stream_default: bool  # also stream with the default max_file_age (needs >= 60 s)
    # 8. idle
    idle_seconds: float
    # 7. transports
    transport_files: int
    transport_file_mib: int


FULL = Mode("full", runs=3, batch_rows=100_000, single_commits=1000,
            capture_changes=1_000_000, capture_tables=5, profile_changes=200_000,
            peer_rows=500_000, burst_changes=1_000_000, latency_commits=50, stream_seconds=60.0,
            stream_default=True, idle_seconds=60.0,
            transport_files=32, transport_file_mib=4)
QUICK = Mode("quick", runs=1, batch_rows=10_000, single_commits=100,
             capture_changes=50_000, capture_tables=5, profile_changes=50_000,
             peer_rows=50_000, burst_changes=100_000, latency_commits=10, stream_seconds=8.0,
             stream_default=False, idle_seconds=10.0,
             transport_files=8, transport_file_mib=2)


# -- statistics ---------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median with the spread of the runs behind it."""
    vals = [float(v) for v in values]
    return {"median": median(vals), "min": min(vals, default=float("nan")),
            "max": max(vals, default=float("nan")), "runs": vals}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a small sample."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil(q/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "ok" if ok else "miss"


# -- machine facts (no host names) ---------------------------------------------
def fsync_ms(directory: Path, count: int = 30) -> float:
    """Median time of a 4 KiB write + fsync: what a synchronous=FULL commit waits for."""
    path = directory / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            os.pwrite(fd, b"x" * 4096, 0)
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return median(times) * 1000


def code_version() -> dict[str, Any]:
    """The commit measured, and whether edge_agent/ differed from it during the run."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "edge_agent_modified": bool(git("status", "--porcelain", "--", "edge_agent"))}


def machine(scratch: Path) -> dict[str, Any]:
    import pyarrow

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "system": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "sqlite": sqlite3.sqlite_version,
        "fsync_ms": round(fsync_ms(scratch), 3),
    }


# -- configs --------------------------------------------------------------------
def agent_config(work: Path, db: Path, tables: Sequence[str], **sections: dict[str, Any]
                 ) -> dict[str, Any]:
    """A production-like config (the documented defaults) for one source and a dir sink."""
    data: dict[str, Any] = {
        "agent": {"device_id": "bench-gw", "state_dir": str(work / "state"),
                  "log_format": "json"},
        "buffer": {"max_memory": "16MiB"},
        "sources": [{"name": "app", "path": str(db), "tables": list(tables)}],
        "sink": {"kind": "dir", "path": str(work / "lake"), "create": True},
    }
    for section, values in sections.items():
        if section == "source":
            data["sources"][0].update(values)
        else:
            data.setdefault(section, {}).update(values)
    return data


def write_config(work: Path, data: dict[str, Any], name: str = "config.toml") -> Path:
    path = work / name
    path.write_text(toml_text(data), encoding="utf-8")
    return path


# -- the runtime-only environment of the agent under test ---------------------------
# The bench venv holds matplotlib (numpy) and dlt (rich): pyarrow and structlog import
# them when they are present, ~17 MiB in every RSS figure of the agent. Every process
# that stands for the agent, or for a baseline the agent is held to, runs from a venv
# with the product alone: `pip install .[extras]` with the product's own extras (the
# gateway's s3 and postgres, the lake tools' lake), never [test] or [bench].
RUNTIME_EXTRAS = "s3,postgres,lake"
RUNTIME_VENV = RESULTS / "runtime-venv"
FORBIDDEN_IN_RUNTIME = ("numpy", "rich")  # what the bench venv would add to every figure
_runtime: dict[str, Any] = {}


def _runtime_key() -> str:
    """Changes whenever the installed agent would: its code, its metadata, the Python."""
    digest = hashlib.sha256(f"{sys.version}|{RUNTIME_EXTRAS}".encode())
    files = [ROOT / "pyproject.toml", *sorted((ROOT / "packaging" / "backend").glob("*.py")),
             *sorted(p for p in (ROOT / "edge_agent").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _build_runtime(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", f"{ROOT}[{RUNTIME_EXTRAS}]"],
                   check=True, cwd=ROOT, capture_output=True)


def runtime_env() -> dict[str, Any]:
    """The runtime-only venv (built once, reused while the agent is unchanged): its Python
    and what is installed in it. Refuses a venv holding numpy or rich."""
    if _runtime:
        return _runtime
    key = _runtime_key()
    stamp = RUNTIME_VENV / "bench-key"
    if not stamp.exists() or stamp.read_text() != key:
        log("building the runtime-only venv of the agent under test (pip install .)")
        _build_runtime(RUNTIME_VENV)
        stamp.write_text(key)
    python = str(RUNTIME_VENV / "bin" / "python")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze",
                             "--disable-pip-version-check"], capture_output=True, text=True,
                            check=True).stdout.split()
    names = {line.split("==")[0].lower() for line in listed}
    found = sorted(names & set(FORBIDDEN_IN_RUNTIME))
    if found:
        raise RuntimeError(f"the runtime venv {RUNTIME_VENV} holds {found}: they would be "
                           "counted in every RSS figure; delete the venv and run again")
    _runtime.update(python=python, extras=RUNTIME_EXTRAS, key=key[:12],
                    packages=sorted(listed))
    return _runtime


def runtime_python() -> str:
    """The interpreter of the agent under test and of its baselines."""
    return str(runtime_env()["python"])


def agent_cmd(*args: str) -> list[str]:
    """`edge-agent ARGS` from the runtime-only venv (PYTHONPATH still points at the repo,
    whose edge_agent/ is what the venv's key was built from)."""
    return [runtime_python(), "-m", "edge_agent", *args]


# -- processes ------------------------------------------------------------------
def children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Timed:
    wall: float
    cpu: float  # user + system of the child, from RUSAGE_CHILDREN deltas
    returncode: int
    stdout: str
    stderr: str


def run_timed(cmd: Sequence[str], timeout: float = 900, **extra_env: str) -> Timed:
    """Run one child to completion; its wall time and CPU seconds."""
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          env=env(**extra_env), cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    return Timed(wall, children_cpu() - cpu0, proc.returncode, proc.stdout, proc.stderr)


def stop(proc: subprocess.Popen[Any], timeout: float = 60) -> int:
    """SIGTERM, then SIGKILL if it does not end in time; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return int(proc.returncode)


# -- /proc ------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile etc. of a live process, in bytes."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("Vm", "Rss")):
                key, rest = line.split(":", 1)
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0]) * 1024
    return out


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process in seconds (from /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_threads(pid: int) -> dict[str, float]:
    """Summed over the process's live threads: CPU nanoseconds from schedstat (exact,
    unlike the 10 ms ticks of /proc/<pid>/stat) and context switches (wake-ups)."""
    cpu_ns = 0
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            cpu_ns += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    return {"cpu_s": cpu_ns / 1e9, "switches": float(switches)}


# -- systemd readiness -----------------------------------------------------------
class NotifySocket:
    """A real AF_UNIX datagram socket for sd_notify, as systemd binds it.

    Like systemd, it is read all the time (a thread drains it): the daemon sends
    STATUS= on every cycle, and a full socket queue would block its sendto().
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, bytes]] = []
        self._seen = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._seen:
                self.received.append((time.perf_counter(), data))
                self._seen.notify_all()

    def _first(self, field: bytes) -> float | None:
        for at, data in self.received:
            if field in data.split(b"\n"):
                return at
        return None

    def wait_for(self, field: bytes, timeout: float, proc: subprocess.Popen[Any]) -> float:
        """Block until a datagram containing ``field`` arrived; returns its perf_counter."""
        end = time.perf_counter() + timeout
        with self._seen:
            while True:
                at = self._first(field)
                if at is not None:
                    return at
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {proc.returncode} before {field!r}")
                left = end - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"no {field!r} within {timeout}s")
                self._seen.wait(min(left, 0.2))

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        self.sock.close()
        self.path.unlink(missing_ok=True)


@dataclass
class Daemon:
    proc: subprocess.Popen[Any]
    notify: NotifySocket
    started: float
    ready_after: float  # seconds from Popen to READY=1
    log: Any

    def stop(self) -> int:
        try:
            return stop(self.proc)
        finally:
            self.notify.close()
            self.log.close()


def start_daemon(work: Path, config: Path, timeout: float = 60) -> Daemon:
    """`edge-agent run` with a NOTIFY_SOCKET the bench binds; returns once READY=1 came."""
    notify = NotifySocket(work)
    log = (work / "agent.log").open("ab")
    t0 = time.perf_counter()
    proc = subprocess.Popen(agent_cmd("run", "--config", str(config)), stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT,
                            env=env(NOTIFY_SOCKET=str(notify.path)))
    try:
        ready = notify.wait_for(b"READY=1", timeout, proc)
    except BaseException as exc:
        stop(proc)
        notify.close()
        log.close()
        tail = (work / "agent.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{exc}; the daemon's log ends: {tail}") from exc
    return Daemon(proc, notify, t0, ready - t0, log)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A scratch directory on the same file system as a real state dir would be."""
    base = Path(os.environ.get("BENCH_TMP", tempfile.gettempdir()))
    path = Path(tempfile.mkdtemp(prefix=f"edge-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def dir_bytes(root: Path, suffix: str) -> tuple[int, int]:
    """(files, bytes) of files under root whose name ends with suffix."""
    files = 0
    size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(suffix):
                files += 1
                size += os.path.getsize(os.path.join(dirpath, name))
    return files, size


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)

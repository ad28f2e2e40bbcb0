"""Scenario 12: a fleet of gateways -> one Mosquitto -> 1, 2, 4 collectors in one
share group -> one lake; then `edge-agent lake verify`. Side by side, in the same
run and against the same simulated fleet, the durable floor: one plain paho
subscriber that writes each file and manifest with fsync and acks it
(bench/s12_floor.py).

The fleet: N logical gateways (bench/s12_sim.py), spread over SIM_PROCESSES
processes, each gateway with its own MQTT connection and client id and its own
``MqttShipper`` (the agent's code and wire protocol), shipping pre-made bronze
files (real Parquet + manifest, ordinals 1..k per gateway) one after the other and
waiting for each ack; all gateways at once, as after an outage. The total number
of files is the same for every N, so N changes only how many gateways share it.

Measured per (N, receiver): files/s and MB/s (file bytes / wall time from the first
put to the last ack), put latency (first chunk -> ack, resends included), resends,
CPU seconds of the broker, the receivers and the simulators over the window, and
the receivers' run-queue wait (runnable, no core free: CPU starvation). After each
collector measurement `edge-agent lake verify` must exit 0 (complete) and every
file must be in the lake. Then `lake verify` on fleet-shaped lakes of 10k and 100k
files (1,000 gateways) against the walk-and-parse floor of scenario 11
(bench/s12_verify.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, agent_cmd, env, log, percentile, run_timed, stop, summary
from bench.common import workdir as scratch_dir
from bench.s12_verify import verify_lakes

SIZES: dict[str, dict[str, Any]] = {
    "quick": {"fleets": [10], "collectors": [1, 2], "total_files": 50, "sims": 2,
              "verify_lakes": [(20, 10)], "run_seconds": 120.0},
    "full": {"fleets": [50, 200, 1000], "collectors": [1, 2, 4], "total_files": 2000,
             "sims": 4, "verify_lakes": [(1000, 10), (1000, 100)], "run_seconds": 600.0},
}
FILE_BYTES = 256 * 1024  # three chunks of the default 120 KiB
ROWS = 1000
DATE = "2026-12-05"
READY_TIMEOUT = 300.0


# -- the fleet's files -------------------------------------------------------------
def _payload(spool: Path) -> tuple[Path, str]:
    """One real bronze Parquet file (random payload, ~FILE_BYTES) every gateway ships:
    the collector checks its footer, not which device's rows it holds."""
    from bench.s7_transports import _parquet

    data, fingerprint = _parquet(FILE_BYTES)
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / "payload.parquet"
    path.write_bytes(data)
    return path, fingerprint


def _device_files(spool: Path, device: str, count: int, payload: Path, fingerprint: str
                  ) -> list[list[Any]]:
    import dataclasses
    import hashlib

    from edge_agent.bronze.layout import FileKey
    from edge_agent.spool.manifest import build
    from edge_agent.spool.state import FileRecord

    data = payload.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    out = []
    for ordinal in range(1, count + 1):
        first = (ordinal - 1) * ROWS + 1
        key = FileKey(device, "app", "readings", DATE, first, first + ROWS - 1)
        rec = FileRecord(key.file_id, "app", "readings", ordinal, first, first + ROWS - 1,
                         ROWS, len(data), sha, key.relpath, key.manifest_relpath, 0)
        manifest = spool / f"{device}-{ordinal}.manifest.json"
        manifest.write_text(json.dumps(build(rec, device, fingerprint, 0)))
        out.append([str(payload), str(manifest), dataclasses.asdict(rec)])
    return out


def make_fleet(spool: Path, gateways: int, total: int, payload: Path, fingerprint: str
               ) -> dict[str, list[list[Any]]]:
    per = max(1, total // gateways)
    spool.mkdir(parents=True, exist_ok=True)
    return {f"gw{i:04d}": _device_files(spool, f"gw{i:04d}", per, payload, fingerprint)
            for i in range(gateways)}


# -- processes ---------------------------------------------------------------------------
def _sched(pid: int) -> tuple[float, float]:
    """(CPU seconds, run-queue wait seconds) summed over the live threads of ``pid``."""
    cpu = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue
        cpu, wait = cpu + int(fields[0]), wait + int(fields[1])
    return cpu / 1e9, wait / 1e9


def _machine() -> tuple[float, float, float]:
    """(busy, iowait, total) jiffies of all cores, from the first line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait, total = fields[3], fields[4], sum(fields[:8])
    return total - idle - iowait, iowait, total


def _wait_for(cond: Any, what: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Receivers:
    """The collectors of one share group, or the floor: started, ready, stopped."""

    def __init__(self, where: Path, port: int, prefix: str, kind: str, count: int) -> None:
        self.where, self.kind = where, kind
        self.lake = where / "lake"
        self.logs = [where / f"{kind}-{i}.log" for i in range(count)]
        self.procs = [self._start(i, port, prefix) for i in range(count)]

    def _start(self, i: int, port: int, prefix: str) -> subprocess.Popen[bytes]:
        if self.kind == "floor":
            cmd = [sys.executable, "-m", "bench.s12_floor", str(port), prefix, str(self.lake),
                   str(self.where / "floor.ready")]
        else:
            config = self.where / "collector.toml"
            config.write_text(
                f'[collector]\nlog_format = "json"\nhost = "127.0.0.1"\nport = {port}\n'
                f'topic_prefix = "{prefix}"\nshare_group = "lake"\nlake = "{self.lake}"\n'
                f'staging_dir = "{self.where / "staging"}"\n')
            cmd = agent_cmd("collect", "--config", str(config))
        with self.logs[i].open("ab") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                    env=env())

    def ready(self) -> bool:
        if any(p.poll() is not None for p in self.procs):
            raise RuntimeError(f"a {self.kind} exited: {self.logs[0].read_text()[-1500:]}")
        if self.kind == "floor":
            return (self.where / "floor.ready").exists()
        return all("collector.subscribed" in p.read_text(errors="replace") for p in self.logs)

    def cpu(self) -> tuple[float, float]:
        parts = [_sched(p.pid) for p in self.procs]
        return sum(c for c, _ in parts), sum(w for _, w in parts)

    def stop(self) -> dict[str, Any]:
        for p in self.procs:
            stop(p)
        return self._counters()

    def _counters(self) -> dict[str, Any]:
        """The collectors' counters from their `collector.stopped` lines, summed, and
        how many files each collector landed."""
        total: dict[str, Any] = {"landed_by": []}
        for path in self.logs:
            for line in path.read_text(errors="replace").splitlines():
                if '"collector.stopped"' not in line:
                    continue
                found = json.loads(line)
                total["landed_by"].append(found.get("files_landed", 0))
                for k, v in found.items():
                    if isinstance(v, int) and not isinstance(v, bool):
                        total[k] = total.get(k, 0) + v
        return total


class Fleet:
    """The simulator processes of one measurement."""

    def __init__(self, where: Path, plan: dict[str, Any]) -> None:
        self.where = where
        self.plan_path = where / "plan.json"
        self.plan_path.write_text(json.dumps(plan))
        self.count = len(plan["sims"])
        self.log = (where / "sims.log").open("ab")
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.s12_sim", str(self.plan_path), str(i)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env=env())
            for i in range(self.count)]

    def _exited(self) -> None:
        if any(p.poll() not in (None, 0) for p in self.procs):
            tail = (self.where / "sims.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"a simulator failed: {tail}")

    def ready(self) -> bool:
        self._exited()
        return all((self.where / f"sim-{i}.ready").exists() for i in range(self.count))

    def done(self) -> bool:
        self._exited()
        return all((self.where / f"sim-{i}.json").exists() for i in range(self.count))

    def go(self) -> None:
        (self.where / "go").write_text("go")

    def results(self) -> list[dict[str, Any]]:
        return [json.loads((self.where / f"sim-{i}.json").read_text())
                for i in range(self.count)]

    def close(self) -> None:
        for p in self.procs:
            stop(p, timeout=30)
        self.log.close()


def _plan(devices: dict[str, list[list[Any]]], sims: int, port: int, prefix: str,
          run_seconds: float) -> dict[str, Any]:
    from edge_agent.config import SinkConfig

    names = sorted(devices)
    d = SinkConfig(kind="mqtt")
    return {"port": port, "prefix": prefix, "ack_timeout": d.ack_timeout,
            "retry_min": d.retry_min, "retry_max": 60.0, "run_seconds": run_seconds,
            "sims": [{n: devices[n] for n in names[i::sims]} for i in range(sims)]}


# -- one measurement -----------------------------------------------------------------------
def _lake_files(lake: Path) -> int:
    return sum(1 for _ in (lake / "bronze").rglob("*.parquet")) if lake.exists() else 0


def _window(sims: list[dict[str, Any]]) -> float:
    return float(max(s["end"] for s in sims) - min(s["start"] for s in sims))


def _shipped(sims: list[dict[str, Any]], wall: float, total_bytes: int) -> dict[str, Any]:
    lat = [x for s in sims for x in s["latencies"]]
    files = sum(s["files"] for s in sims)
    errors: dict[str, int] = {}
    for s in sims:
        for k, v in s["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {"wall": wall, "files": files, "files_s": files / wall,
            "mb_s": files * total_bytes / wall / 1e6, "put_p50": percentile(lat, 50),
            "put_p99": percentile(lat, 99), "resends": sum(s["resends"] for s in sims),
            "failed": sum(len(s["failed"]) for s in sims), "errors": errors,
            "connect_s": max(s["connect_s"] for s in sims),
            "sim_cpu": sum(s["cpu_s"] for s in sims)}


def measure(where: Path, broker: Any, devices: dict[str, list[list[Any]]], kind: str,
            count: int, sizes: dict[str, Any], prefix: str) -> dict[str, Any]:
    """One fleet -> broker -> receivers run, then the lake checked."""
    where.mkdir(parents=True)
    expected = sum(len(f) for f in devices.values())
    receivers = Receivers(where, broker.port, prefix, kind, count)
    fleet = None
    try:
        _wait_for(receivers.ready, f"{count} {kind}(s) subscribed", READY_TIMEOUT)
        fleet = Fleet(where, _plan(devices, sizes["sims"], broker.port, prefix,
                                   sizes["run_seconds"]))
        _wait_for(fleet.ready, "the simulators' connections", READY_TIMEOUT)
        broker0, recv0, host0 = _sched(broker.proc.pid), receivers.cpu(), _machine()
        fleet.go()
        _wait_for(fleet.done, "the fleet's last ack", sizes["run_seconds"] + 60)
        broker1, recv1, host1 = _sched(broker.proc.pid), receivers.cpu(), _machine()
        sims = fleet.results()
    finally:
        if fleet is not None:
            fleet.close()
        counters = receivers.stop()
    out = _shipped(sims, _window(sims), FILE_BYTES)
    out.update(expected=expected, landed=_lake_files(receivers.lake), counters=counters,
               broker_cpu=broker1[0] - broker0[0], broker_wait=broker1[1] - broker0[1],
               recv_cpu=recv1[0] - recv0[0], recv_wait=recv1[1] - recv0[1],
               host_busy=(host1[0] - host0[0]) / (host1[2] - host0[2]),
               host_iowait=(host1[1] - host0[1]) / (host1[2] - host0[2]),
               loadavg=float(Path("/proc/loadavg").read_text().split()[0]))
    if kind == "collectors":
        timed = run_timed(agent_cmd("lake", "verify", "--lake", str(receivers.lake)))
        out.update(verify_rc=timed.returncode, verify_wall=timed.wall,
                   verify_tail=timed.stdout[-300:] if timed.returncode else "")
    shutil.rmtree(where, ignore_errors=True)
    return out


# -- the scenario ------------------------------------------------------------------------------
def _receivers(sizes: dict[str, Any]) -> list[tuple[str, int]]:
    return [("floor", 1)] + [("collectors", c) for c in sizes["collectors"]]


def _fleet_runs(work: Path, broker: Any, gateways: int, sizes: dict[str, Any], runs: int,
                payload: tuple[Path, str]) -> dict[str, Any]:
    devices = make_fleet(work / f"spool-{gateways}", gateways, sizes["total_files"], *payload)
    found: dict[str, list[dict[str, Any]]] = {}
    for run_no in range(runs):
        order = _receivers(sizes)
        for kind, count in order if run_no % 2 == 0 else order[::-1]:
            name = "floor" if kind == "floor" else f"c{count}"
            prefix = f"fleet{gateways}{name}r{run_no}"
            got = measure(work / prefix, broker, devices, kind, count, sizes, prefix)
            found.setdefault(name, []).append(got)
            log(f"fleet: N={gateways} {name} run {run_no + 1}: {got['files_s']:.1f} files/s, "
                f"{got['mb_s']:.1f} MB/s, resends {got['resends']}, landed "
                f"{got['landed']}/{got['expected']}, verify rc {got.get('verify_rc', '-')}")
    return {name: _aggregate(runs_) for name, runs_ in found.items()}


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("files_s", "mb_s", "wall", "put_p50", "put_p99", "broker_cpu", "recv_cpu",
            "sim_cpu", "recv_wait", "broker_wait", "connect_s", "verify_wall", "host_busy",
            "host_iowait", "loadavg")
    out: dict[str, Any] = {k: summary([r[k] for r in runs]) for k in keys if k in runs[0]}
    out["cpu_share"] = summary([(r["broker_cpu"] + r["recv_cpu"] + r["sim_cpu"]) / r["wall"]
                                for r in runs])
    out["resends"] = [r["resends"] for r in runs]
    out["failed"] = [r["failed"] for r in runs]
    out["complete"] = [r["landed"] == r["expected"] and r.get("verify_rc", 0) == 0
                       for r in runs]
    out["verify_rc"] = [r.get("verify_rc") for r in runs]
    out["expected"] = runs[0]["expected"]
    out["counters"] = [r["counters"] for r in runs]
    out["others"] = summary([max(0.0, r["host_busy"] - (r["broker_cpu"] + r["recv_cpu"]
                                                       + r["sim_cpu"]) / r["wall"] / 2)
                             for r in runs])
    out["errors"] = [r["errors"] for r in runs]
    return out


def run(mode: Any) -> dict[str, Any]:
    from tests.servers import Mosquitto

    sizes = SIZES[mode.name]
    result: dict[str, Any] = {"file_bytes": FILE_BYTES, "total_files": sizes["total_files"],
                              "sim_processes": sizes["sims"], "fleets": {}}
    with scratch_dir("fleet") as work:
        payload = _payload(work / "spool")
        broker = Mosquitto(work / "mosquitto")
        try:
            for gateways in sizes["fleets"]:
                result["fleets"][str(gateways)] = _fleet_runs(work, broker, gateways, sizes,
                                                              mode.runs, payload)
        finally:
            broker.close()
    result["verify"] = verify_lakes(sizes["verify_lakes"], DATE, mode.runs)
    return result

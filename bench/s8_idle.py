"""Scenario 8 (with the idle and start-up parts of 4): the daemon doing nothing.

`edge-agent run` starts on a database with 5 captured, empty tables, with the
default config (poll_interval 5s) and with the latency-tuned one (poll_interval
1s), each with a NOTIFY_SOCKET the bench binds (AF_UNIX datagram, as systemd
does): the time from process start to READY=1 is measured there. Then no
change is made for the idle period; CPU is utime+stime from /proc/<pid>/stat
(10 ms ticks) and, exactly, the sum of the threads' /proc/<pid>/task/*/schedstat;
wake-ups are the threads' context switches; RSS is from /proc/<pid>/status.
Baseline: `sleep` over the same period, and for start-up, a bare
`python -c "import pyarrow.parquet, structlog, watchdog"`. The daemons and the
import baseline run from the runtime-only venv (bench.common.runtime_python).
Target (issue 14): idle CPU < 1 CPU-s per hour with the default config.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from bench import app
from bench.common import (
    Daemon,
    agent_config,
    log,
    proc_cpu,
    proc_status,
    proc_threads,
    run_timed,
    runtime_python,
    start_daemon,
    stop,
    summary,
    verdict,
    write_config,
)
from bench.s5_latency import DEFAULT, TUNED
from bench.session import Session

CONFIGS = {"default": DEFAULT, "tuned": TUNED}
CPU_S_PER_HOUR_TARGET = 1.0  # default config, idle


def _daemon(work: Path, settings: dict[str, dict[str, str]]) -> Daemon:
    db = work / "app" / "app.db"
    db.parent.mkdir(parents=True)
    tables = app.table_names(5)
    con = app.create(db, tables)
    app.install_triggers(con, db, tables)
    con.close()
    return start_daemon(work, write_config(work, agent_config(work, db, tables, **settings)))


def one_run(session: Session, run_no: int, seconds: float) -> dict[str, Any]:
    daemons: dict[str, Daemon] = {}
    out: dict[str, Any] = {}
    sleeper = None
    try:
        for name, settings in CONFIGS.items():  # one at a time: start-up is measured
            daemons[name] = _daemon(session.scratch(f"idle-{name}-{run_no}"), settings)
        sleeper = subprocess.Popen(["sleep", str(int(seconds + 30))])
        time.sleep(2.0)  # let start-up work (trigger check, first step) settle
        pids = {n: d.proc.pid for n, d in daemons.items()}
        pids["sleep"] = sleeper.pid
        cpu0 = {n: proc_cpu(pid) for n, pid in pids.items()}
        thr0 = {n: proc_threads(pid) for n, pid in pids.items()}
        rss0 = {n: proc_status(d.proc.pid)["VmRSS"] for n, d in daemons.items()}
        time.sleep(seconds)
        cpu1 = {n: proc_cpu(pid) for n, pid in pids.items()}
        thr1 = {n: proc_threads(pid) for n, pid in pids.items()}
        for name, pid in pids.items():
            out[name] = {"cpu_s": cpu1[name] - cpu0[name],
                         "sched_cpu_s": thr1[name]["cpu_s"] - thr0[name]["cpu_s"],
                         "wakeups_per_s": (thr1[name]["switches"] - thr0[name]["switches"])
                         / seconds}
            if name in daemons:
                status = proc_status(pid)
                out[name].update({"ready_s": daemons[name].ready_after,
                                  "rss_start": rss0[name], "rss_end": status["VmRSS"],
                                  "anon_end": status.get("RssAnon", 0),
                                  "file_end": status.get("RssFile", 0),
                                  "hwm": status["VmHWM"]})
    finally:
        for d in daemons.values():
            d.stop()
        if sleeper is not None:
            stop(sleeper, timeout=5)
    return out


def run(session: Session) -> dict[str, Any]:
    mode = session.mode
    runs = []
    imports = []
    for run_no in range(mode.runs):
        t = run_timed([runtime_python(), "-c", "import pyarrow.parquet, structlog, watchdog"])
        imports.append(t.wall)
        runs.append(one_run(session, run_no, mode.idle_seconds))
        log(f"idle: run {run_no + 1}/{mode.runs} done")
    secs = mode.idle_seconds
    out: dict[str, Any] = {"seconds": secs, "import_baseline_s": summary(imports),
                           "cpu_s_per_hour_target": CPU_S_PER_HOUR_TARGET}
    for name in (*CONFIGS, "sleep"):
        keys = ["cpu_s", "sched_cpu_s", "wakeups_per_s"]
        if name != "sleep":
            keys += ["ready_s", "rss_start", "rss_end", "anon_end", "file_end", "hwm"]
        out[name] = {key: summary([r[name][key] for r in runs]) for key in keys}
        out[name]["cpu_share"] = out[name]["sched_cpu_s"]["median"] / secs
        out[name]["cpu_s_per_hour"] = summary([r[name]["sched_cpu_s"] * 3600 / secs
                                               for r in runs])
    out["verdict"] = verdict(out["default"]["cpu_s_per_hour"]["median"], CPU_S_PER_HOUR_TARGET,
                             higher_is_better=False)
    return out

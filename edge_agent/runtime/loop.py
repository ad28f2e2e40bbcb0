"""The daemon: runs Agent.step on wake-ups and deadlines, serves control requests,
handles signals, talks to systemd, and ends with a bounded final flush."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_agent.clock import Clock
from edge_agent.config import Config
from edge_agent.control.socket import ControlServer, Request
from edge_agent.errors import EdgeAgentError
from edge_agent.log import get_logger
from edge_agent.runtime.agent import Agent, StepSummary
from edge_agent.runtime.metrics import Endpoint, Tally, figures
from edge_agent.runtime.signals import SignalFlags
from edge_agent.runtime.status import build_status
from edge_agent.runtime.systemd import Notifier
from edge_agent.runtime.watch import DatabaseWatcher, Waker

if TYPE_CHECKING:
    from edge_agent.runtime.remote_runtime import RemoteControl

log = get_logger("edge_agent.daemon")
FIGURES_EVERY = 5.0  # seconds between updates of the Prometheus figures


@dataclass(frozen=True)
class RemoteSupport:
    """What remote control needs from the service layer: a config built from a remote
    document (None: the local file alone), and snapshot requests."""

    load: Callable[[str | None], Config]
    request_snapshot: Callable[[Config, str | None], list[str]]


class Daemon:
    def __init__(
        self,
        cfg: Config,
        build_agent: Callable[[Config], Agent],
        reload_config: Callable[[], Config],
        notifier: Notifier,
        clock: Clock,
        remote: RemoteSupport | None = None,
    ) -> None:
        self.cfg = cfg
        self.build_agent = build_agent
        self.reload_config = reload_config
        self.notifier = notifier
        self.clock = clock
        self.flags = SignalFlags()
        self.waker = Waker()
        self.requests: queue.Queue[Request] = queue.Queue()
        self.agent: Agent | None = None
        self.watcher: DatabaseWatcher | None = None
        self.support = remote
        self.remote: RemoteControl | None = None
        self.tally = Tally()
        self.endpoint: Endpoint | None = None
        self._figures_at = 0.0

    def run(self) -> int:
        self.flags.install(self.waker.write_fd)
        agent = self.agent = self._build(self.cfg)
        self._start_watcher()
        server = ControlServer(agent.statedir.socket_path, self.requests, self.waker.wake)
        server.start()
        self._start_metrics()
        self._start_remote()
        log.info(
            "started",
            device=self.cfg.device_id,
            sources=[s.name for s in self.cfg.sources],
            sink=self.cfg.sink.kind,
            recovery=vars(agent.recovery),
        )
        try:
            # READY only once a first cycle has opened the sources and installed triggers.
            summary = agent.step(self.clock.monotonic())
            self._count(summary)
            self.notifier.ready(self._status_line(summary))
            self._loop()
        finally:
            server.close()
            if self.remote is not None:
                self.remote.close()
            if self.endpoint is not None:
                self.endpoint.close()
            self._shutdown()
        return 0

    def _start_metrics(self) -> None:
        port = self.cfg.agent.metrics_port
        if not port:
            return
        try:
            self.endpoint = Endpoint(port)
        except OSError as exc:
            log.error(
                "metrics.unavailable",
                port=port,
                error=str(exc),
                hint="choose a free agent.metrics_port, or 0 for off",
            )
            return
        log.info("metrics.serving", address=f"127.0.0.1:{port}")

    def figures(self) -> dict[str, float]:
        version = self.remote.config_version() if self.remote is not None else 0
        return figures(self._current(), self.tally, version)

    def _count(self, summary: StepSummary) -> None:
        self.tally.add(summary)
        now = self.clock.monotonic()
        if self.endpoint is not None and now - self._figures_at >= FIGURES_EVERY:
            self._figures_at = now
            self.endpoint.update(self.figures())

    def _start_remote(self) -> None:
        if self.cfg.control is None or self.support is None:
            return
        from edge_agent.runtime.remote_runtime import RemoteControl  # paho, cryptography

        self.remote = RemoteControl(self.cfg, self, self.support.load, self.waker.wake)
        self.remote.start()

    def _loop(self) -> None:
        while not self.flags.stop:
            agent = self._current()
            now = self.clock.monotonic()
            summary = agent.step(now)
            self._count(summary)
            self._serve_requests()
            if self.remote is not None:
                self.remote.poll()
                if self.agent is not agent:
                    continue  # a remote config switched agents: the next cycle runs the new one
            if self.flags.reload:
                self.reload()
                continue  # the old agent is closed: the next cycle runs on the new one
            self.notifier.watchdog(self.clock.monotonic())
            self.notifier.status(self._status_line(summary))
            if not summary.caught_up and not summary.blocked:
                continue
            self._sleep(agent.next_deadline(now) - self.clock.monotonic())

    def _sleep(self, timeout: float) -> None:
        if self.notifier.watchdog_interval:
            timeout = min(timeout, self.notifier.watchdog_interval / 2)
        woke = self.waker.wait(timeout)
        if woke and not self.flags.stop and self.requests.empty() and self.cfg.agent.debounce:
            # Let a burst of writes settle into one capture cycle.
            self.waker.wait(self.cfg.agent.debounce)

    def _build(self, cfg: Config) -> Agent:
        agent = self.build_agent(cfg)
        # Long flushes and catch-ups keep systemd's watchdog fed; a flush's pauses end
        # early on a signal or a control request (both wake the waker).
        agent.heartbeat = lambda: self.notifier.watchdog(self.clock.monotonic())
        agent.sleep = self._pause
        return agent

    def _pause(self, seconds: float) -> None:
        self.waker.wait(seconds)

    def _current(self) -> Agent:
        if self.agent is None:
            raise RuntimeError("daemon has no agent")
        return self.agent

    def _serve_requests(self) -> None:
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                return
            request.reply.put(self._answer(request))

    def _during_flush(self) -> str | None:
        """Between a served flush's shipping attempts: answer `status` (a second flush
        waits its turn), and end the flush when a stop was asked for."""
        waiting: list[Request] = []
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                break
            if request.command == "flush":
                waiting.append(request)
            else:
                request.reply.put(self._answer(request))
        for request in waiting:
            self.requests.put(request)
        if self.flags.stop:
            return "stopping: the agent was asked to stop; the final flush ships what it can"
        return None

    def _answer(self, request: Request) -> dict[str, Any]:
        agent = self._current()
        if request.command == "flush":
            result = agent.flush(
                self.clock.monotonic() + float(request.args["timeout"]),
                interrupted=self._during_flush,
            )
            return {
                "ok": result.ok,
                "pending_files": result.pending_files,
                "pending_bytes": result.pending_bytes,
                "errors": result.errors,
                "caught_up": result.caught_up,
            }
        if request.command == "status":
            return {"ok": True, "status": build_status(agent.cfg, agent.state, live_figures(agent))}
        return {"ok": False, "error": f"unknown command {request.command!r}: use flush or status"}

    def _status_line(self, s: StepSummary) -> str:
        agent = self._current()
        state = "blocked: spool full" if s.blocked else "capturing"
        return (
            f"{state}; buffered {agent.writer.buffered_bytes} B; "
            f"last cycle {s.changes} changes, {s.shipped} files shipped"
        )

    def reload(self) -> None:
        """SIGHUP: build an agent on the re-read config and switch to it; a config that
        fails to load or to build is logged and the running agent keeps going."""
        self.flags.reload = False
        self.notifier.reloading()
        try:
            new_cfg = self.reload_config()
        except EdgeAgentError as exc:
            log.error("reload.rejected", error=str(exc), hint="keeping the running config")
            self.notifier.ready("capturing (reload rejected)")
            return
        failed = self.switch(new_cfg)
        if failed is not None:
            log.error("reload.rejected", error=failed, hint="keeping the running config")
            self.notifier.ready("capturing (reload rejected)")

    def switch(self, new_cfg: Config) -> str | None:
        """Run ``new_cfg`` from now on (SIGHUP, or a remote config); returns why not, and
        the running agent keeps going."""
        if new_cfg.agent.state_dir != self.cfg.agent.state_dir:
            return "agent.state_dir cannot change on reload: restart the service to move it"
        old = self._current()
        old.seal_all()  # nothing open: the new agent's start-up repair finds no temp files
        try:
            new = self._build(new_cfg)
        except Exception as exc:  # any failure to build keeps the running agent
            return str(exc) or type(exc).__name__
        old.close()
        self._stop_watcher()
        self.cfg = new_cfg
        self.agent = new
        self._start_watcher()
        summary = self.agent.step(self.clock.monotonic())  # open sources, install triggers
        log.info("reloaded", sources=[s.name for s in new_cfg.sources])
        self.notifier.ready(self._status_line(summary))
        return None

    # -- what remote commands reach ---------------------------------------------
    def flush(self, timeout: float) -> dict[str, Any]:
        return self._answer(Request("flush", {"timeout": timeout}, queue.Queue()))

    def status(self) -> dict[str, Any]:
        agent = self._current()
        return build_status(agent.cfg, agent.state, live_figures(agent))

    def request_snapshot(self, table: str | None) -> list[str]:
        if self.support is None:
            return ["snapshot requests need the service layer"]
        return self.support.request_snapshot(self.cfg, table)

    def _start_watcher(self) -> None:
        paths = [s.path for s in self.cfg.sources if s.kind == "sqlite"]
        try:
            watcher = DatabaseWatcher(paths, self.waker)
            watcher.start()
        except OSError as exc:  # e.g. the inotify limit is reached: polling still works
            log.warning(
                "watch.unavailable",
                error=str(exc),
                hint="capture runs every agent.poll_interval; raise "
                "fs.inotify.max_user_instances to get wake-ups on writes",
            )
            return
        self.watcher = watcher

    def _stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self._stop_watcher()
        agent = self._current()
        deadline = self.clock.monotonic() + self.cfg.agent.shutdown_timeout
        try:
            result = agent.flush(deadline, capture=False)
            log.info("stopped", pending_files=result.pending_files, errors=result.errors)
        finally:
            agent.close()
            self.waker.close()


def live_figures(agent: Agent) -> dict[str, Any]:
    """What only the running daemon knows, for `status`'s live section."""
    return {
        "buffered_bytes": agent.writer.buffered_bytes,
        "open_files": len(agent.writer.open),
        # A failed spool or state write stalls capture as a full spool does.
        "spool_blocked": agent.quota.blocked or agent.spool_failed,
        "spool_error": agent.spool_error,
    }

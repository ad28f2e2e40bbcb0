"""Real servers for integration tests, each on 127.0.0.1 with a free port.

- MotoS3: moto's standalone S3-compatible server, as its own process.
- TcpProxy: a byte-forwarding proxy that tests stop and restart to cut the
  network mid-transfer while the server behind it keeps its data.
- Mosquitto: a real MQTT 5 broker process (password file and TLS optional).
- Postgres: a real PostgreSQL server (Debian's package), initdb in a temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "testing-key"
SECRET_KEY = "testing-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class MotoS3:
    def __init__(self, log_dir: Path, free_actions: int | None = None) -> None:
        """With ``free_actions``, only that many requests go unauthenticated; after
        them the server checks credentials against its IAM (ours are unknown)."""
        self.port = free_port()
        self.log = (log_dir / f"moto-{self.port}.log").open("ab")
        env = dict(os.environ)
        if free_actions is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(free_actions)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=self.log, env=env,
        )
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, url: str | None = None, key: str = ACCESS_KEY) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=url or self.url, region_name="us-east-1",
            aws_access_key_id=key, aws_secret_access_key=SECRET_KEY,
        )

    def download(self, bucket: str, dest: Path, prefix: str = "") -> list[str]:
        """Copy every object into dest/<key>; returns the keys."""
        client = self.client()
        keys: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                target = dest / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                keys.append(obj["Key"])
        return keys

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class TcpProxy:
    """Forwards 127.0.0.1:port to a target port until stopped; restartable."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.replies = threading.Event()  # cleared: the server's bytes are held back
        self.replies.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b, gate in ((client, upstream, None), (upstream, client, self.replies)):
                threading.Thread(target=self._pipe, args=(a, b, gate), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket,
              gate: threading.Event | None = None) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if gate is not None:
                    gate.wait()
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def hold_replies(self) -> None:
        """Keep what the server sends (e.g. a broker's PUBACKs) from the clients, the
        connections staying up, until ``release_replies()``."""
        self.replies.clear()

    def release_replies(self) -> None:
        self.replies.set()

    def stop(self) -> None:
        """Refuse new connections and cut every open one, mid-transfer or not."""
        if self.listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


# --- MQTT: a real Mosquitto broker -----------------------------------------------

# Mosquitto silently drops QoS 1 messages queued for a slow or offline subscriber
# beyond max_queued_messages (default 1000). The tests set it deliberately: high
# enough that a test's own backlog never reaches it, so a loss would be ours; a
# test that wants the drops passes a small value and shows that the collector's
# ack, not the broker, is what makes delivery safe. Operators: see docs/mqtt.md.
MAX_QUEUED_MESSAGES = 100_000


def mosquitto_binary() -> str:
    """The broker binary; a missing one fails the test with the install step."""
    import shutil

    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if found is None:
        import pytest

        pytest.fail("mosquitto not found: run `bash scripts/install-test-deps.sh` as root "
                    "(Debian package mosquitto)", pytrace=False)
    return found


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate,
    all signed by that CA; made with the openssl CLI."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, where: Path) -> TlsFiles:
        where.mkdir(parents=True, exist_ok=True)
        ca_key, ca = where / "ca.key", where / "ca.crt"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
                 "-subj", "/CN=edge-agent test CA")
        files = {}
        for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
            files[name] = _leaf(where, name, usage, ca, ca_key)
        return cls(ca, *files["server"], *files["client"])


def _leaf(where: Path, name: str, usage: str, ca: Path, ca_key: Path) -> tuple[Path, Path]:
    key, csr, cert = where / f"{name}.key", where / f"{name}.csr", where / f"{name}.crt"
    ext = where / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\n"
                   f"extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN=edge-agent test {name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


class Mosquitto:
    """A Mosquitto broker process with a generated config, on 127.0.0.1.

    ``users`` turns anonymous access off and writes a password file
    (mosquitto_passwd -b); ``tls`` adds a TLS listener (``tls_port``) that also
    requires a client certificate signed by the fixture's CA. kill() and
    start() cut the broker mid-transfer and bring it back on the same ports.
    """

    def __init__(self, workdir: Path, users: dict[str, str] | None = None,
                 tls: TlsFiles | None = None, max_queued_messages: int = MAX_QUEUED_MESSAGES,
                 max_packet_size: int | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(self._config(users, tls, max_queued_messages, max_packet_size))
        self.log = (workdir / "mosquitto.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def _config(self, users: dict[str, str] | None, tls: TlsFiles | None,
                max_queued: int, max_packet: int | None) -> str:
        lines = ["per_listener_settings false", "persistence false",
                 f"max_queued_messages {max_queued}", "max_inflight_messages 0",
                 "log_dest stdout", "log_type error", "log_type warning", "log_type notice",
                 "log_type information", "connection_messages true",
                 f"allow_anonymous {'false' if users else 'true'}"]
        if os.geteuid() == 0:
            lines.append("user root")  # keep access to the test's 0700 temp directories
        if max_packet is not None:
            lines.append(f"max_packet_size {max_packet}")
        if users:
            passwd = self.workdir / "passwd"
            for i, (user, password) in enumerate(users.items()):
                flags = ["-c"] if i == 0 else []
                subprocess.run(["mosquitto_passwd", *flags, "-b", str(passwd), user, password],
                               check=True, capture_output=True, timeout=30)
            lines.append(f"password_file {passwd}")
        lines.append(f"listener {self.port} 127.0.0.1")
        if tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls.ca}",
                      f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                      "require_certificate true", "tls_version tlsv1.2"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.config)],
                                     stdout=self.log, stderr=self.log)
        wait_for_port(self.port)
        if self.tls_port:
            wait_for_port(self.tls_port)

    def kill(self) -> None:
        """SIGKILL: connections drop, queued messages are gone (no persistence)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()

    def log_text(self) -> str:
        return (self.workdir / "mosquitto.log").read_text(errors="replace")


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if found:
        return str(found[-1])
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} not found: run `bash scripts/install-test-deps.sh` as "
                           "root (Debian package postgresql)")
    return on_path


class Postgres:
    """A real PostgreSQL server: initdb into a temp dir, pg_ctl on a free port on
    127.0.0.1 (trust auth, no fsync: test data only). initdb refuses root, so as root
    the server runs as the Debian package's ``postgres`` user."""

    def __init__(self, fsync: bool = False) -> None:
        # Its own directory: pytest's tmp dirs are private to root, and the server user
        # must reach its data directory. Benchmarks pass fsync=True (commits wait for disk).
        self.fsync = fsync
        base = Path(tempfile.mkdtemp(prefix="edge-agent-pg-"))
        self.base = base
        self.port = free_port()
        self.data = base / "pgdata"
        self.sock = base / "pgsock"
        self.log = base / "postgres.log"
        self.sock.mkdir(parents=True)
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(base, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync")
        self.start()

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} "
                f"-c fsync={'on' if self.fsync else 'off'} "
                "-c wal_level=logical -c max_replication_slots=200 -c max_wal_senders=20")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                  "-w", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def require_password(self, role: str, password: str) -> None:
        """Create ``role`` and make it log in with a password (scram), others stay trusted."""
        import psycopg

        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        with psycopg.connect(self.dsn(), autocommit=True) as con:
            con.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            con.execute("SELECT pg_reload_conf()")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

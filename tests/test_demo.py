"""`edge-agent demo`, the README's first command, as a newcomer runs it (not on a terminal,
as under `make demo | tee` or in CI)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_the_demo_rebuilds_every_table_and_tells_its_story_without_log_noise(
        tmp_path: Path) -> None:
    done = run_cli("demo", "--seconds", "1", "--dir", str(tmp_path / "demo"), timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo: readings:" in done.stdout and "(matches)" in done.stdout
    assert "demo: alarms:" in done.stdout
    assert "mismatch" not in done.stdout
    # Issue 12.14: a JSON log line showed up in the middle of the demo's output.
    noise = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("{")]
    assert noise == []

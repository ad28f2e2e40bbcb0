"""The `edge-agent` command line as a real process: the exit codes and messages that
operators and scripts depend on."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import build_parser
from edge_agent.errors import toml_value
from tests.conftest import config_dict, run_cli, write_config
from tests.lake import assert_exact, lake_files, read_changes
from tests.runtime.agent_process import AgentProcess, insert_readings, wait_until

READINGS = {"readings": ["id"]}


def output(done: Any) -> str:
    return str(done.stdout) + str(done.stderr)


def spooled(tmp: Path) -> list[Path]:
    return sorted((tmp / "state" / "spool" / "ready").rglob("*.parquet"))


def triggers(action: str, config: Path, *flags: str) -> Any:
    return run_cli("triggers", action, "--config", str(config), *flags)


def installed(tmp: Path, db: Path, tables: list[str], **sections: Any) -> Path:
    config = write_config(tmp, config_dict(tmp, db, tables, **sections))
    done = triggers("install", config)
    assert done.returncode == 0, output(done)
    return config


def tables_with_triggers(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute(
            "SELECT tbl_name FROM sqlite_master WHERE type = 'trigger'")}
    finally:
        con.close()


# --- config check -----------------------------------------------------------------


def test_config_check_accepts_a_good_file(tmp_path: Path, app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"]))

    done = run_cli("config", "check", str(config))

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {config}: device gw-test, 1 source(s), sink dir -> ")
    assert str(tmp_path / "lake") in done.stdout
    assert "warning" not in done.stdout


def test_config_check_only_warns_about_a_database_that_does_not_exist_yet(
        tmp_path: Path) -> None:
    missing = tmp_path / "later.db"
    config = write_config(tmp_path, config_dict(tmp_path, missing, ["readings"]))

    done = run_cli("config", "check", str(config))

    assert done.returncode == 0, done.stderr
    assert f"warning: sources[app].path {str(missing)!r} does not exist yet" in done.stdout
    assert not missing.exists()


def test_config_check_on_a_bad_file_exits_2_naming_field_value_and_fix(tmp_path: Path,
                                                                       app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(
        tmp_path, app_db, ["readings"], buffer={"max_memory": "16 megabytes"},
        agent={"log_level": "loud"}))

    done = run_cli("config", "check", str(config))

    assert done.returncode == 2
    assert "ok:" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("edge-agent config: error: config: ")
    assert any('buffer.max_memory = "16 megabytes": ' in line and '"16MiB"' in line
               for line in lines), done.stderr
    assert any('agent.log_level = "loud": ' in line and '"debug"' in line
               for line in lines), done.stderr


def test_config_check_applies_environment_overrides(tmp_path: Path, app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"]))

    done = run_cli("config", "check", str(config), EDGE_AGENT__BUFFER__MAX_MEMORY="lots")

    assert done.returncode == 2
    assert 'buffer.max_memory = "lots"' in done.stderr


def test_config_check_on_a_missing_file_exits_2_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    done = run_cli("config", "check", str(missing))

    assert done.returncode == 2
    assert f"{toml_value(str(missing))}: no such file" in done.stderr


def test_config_check_on_invalid_toml_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[agent\nstate_dir = "x"\n', encoding="utf-8")

    done = run_cli("config", "check", str(broken))

    assert done.returncode == 2
    assert str(broken) in done.stderr
    assert "not valid TOML" in done.stderr


def test_a_command_with_a_bad_config_does_nothing_and_exits_2(tmp_path: Path,
                                                              app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"],
                                                sink={"kind": "ftp"}))

    done = run_cli("flush", "--config", str(config))

    assert done.returncode == 2
    assert 'sink.kind = "ftp"' in done.stderr
    assert not (tmp_path / "state").exists()


# --- triggers ---------------------------------------------------------------------


def test_triggers_install_on_a_missing_database_names_it_and_creates_nothing(
        tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    config = write_config(tmp_path, config_dict(tmp_path, missing, ["readings"]))

    done = triggers("install", config)

    assert done.returncode == 1
    assert str(missing) in output(done)
    assert "sources.path" in output(done)
    assert not missing.exists(), "the agent must never create the application's database"


def test_triggers_install_with_an_unknown_table_is_refused_naming_it(tmp_path: Path,
                                                                     app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings", "nope"]))

    done = triggers("install", config)

    assert done.returncode == 1
    assert "table 'nope' not found" in output(done)
    assert "sources.tables" in output(done)
    # The whole install is refused, the valid table included.
    assert tables_with_triggers(app_db) == set()


def test_triggers_install_refuses_a_table_without_a_primary_key(tmp_path: Path,
                                                                app_db: Path) -> None:
    con = sqlite3.connect(app_db)
    con.execute("CREATE TABLE log_lines (at TEXT, line TEXT)")
    con.commit()
    con.close()
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["log_lines"]))

    done = triggers("install", config)

    assert done.returncode == 1
    assert "table 'log_lines' has no PRIMARY KEY" in output(done)
    assert tables_with_triggers(app_db) == set()


def test_triggers_verify_fails_before_install_and_passes_after(tmp_path: Path,
                                                               app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings", "events"]))

    before = triggers("verify", config)
    install = triggers("install", config)
    after = triggers("verify", config)
    again = triggers("install", config)

    assert before.returncode == 1
    assert "no capture triggers installed" in before.stderr
    assert "edge-agent triggers install" in before.stderr
    assert install.returncode == 0, output(install)
    assert install.stdout.strip() == "app: installed: readings, events"
    assert after.returncode == 0, output(after)
    assert after.stdout.strip() == "app: ok: 2 table(s) captured"
    assert again.returncode == 0
    assert again.stdout.strip() == "app: installed: nothing to change"


def test_uninstall_drop_log_is_refused_while_changes_wait_unless_forced(tmp_path: Path,
                                                                        app_db: Path) -> None:
    config = installed(tmp_path, app_db, ["readings"])
    insert_readings(app_db, 3, per_transaction=1)

    refused = triggers("uninstall", config, "--drop-log")
    still = triggers("verify", config)
    forced = triggers("uninstall", config, "--drop-log", "--force")
    gone = triggers("verify", config)

    assert refused.returncode == 1
    assert "refused: 3 change(s) are still waiting" in refused.stderr
    assert "--force" in refused.stderr and "edge-agent flush" in refused.stderr
    assert still.returncode == 0, "a refused uninstall leaves the triggers in place"
    assert forced.returncode == 0, output(forced)
    assert "uninstalled: readings (change log dropped)" in forced.stdout
    assert gone.returncode == 1
    assert tables_with_triggers(app_db) == set()


def test_uninstall_drop_log_is_accepted_once_a_flush_shipped_the_changes(tmp_path: Path,
                                                                         app_db: Path) -> None:
    config = installed(tmp_path, app_db, ["readings"])
    written = insert_readings(app_db, 20)
    flushed = run_cli("flush", "--config", str(config))

    done = triggers("uninstall", config, "--drop-log")

    assert flushed.returncode == 0, flushed.stderr
    assert done.returncode == 0, output(done)
    assert "(change log dropped)" in done.stdout
    assert_exact(tmp_path / "lake", app_db, READINGS, written)


# --- flush ------------------------------------------------------------------------


def test_one_shot_flush_ships_every_committed_change_to_the_lake(tmp_path: Path,
                                                                 app_db: Path) -> None:
    config = installed(tmp_path, app_db, ["readings"], buffer={"max_file_age": "1h"})
    written = insert_readings(app_db, 150)

    done = run_cli("flush", "--config", str(config))

    assert done.returncode == 0, done.stderr
    assert "flushed: every captured change is shipped" in done.stdout
    assert lake_files(tmp_path / "lake")
    assert_exact(tmp_path / "lake", app_db, READINGS, written)
    assert spooled(tmp_path) == []


def test_flush_to_an_unwritable_sink_exits_4_and_keeps_the_files_for_later(
        tmp_path: Path, app_db: Path) -> None:
    # Tests run as root, for whom a chmod'ed directory is writable: a lake path below a
    # regular file cannot be created by anyone (ENOTDIR).
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file, not a directory\n")
    data = config_dict(tmp_path, app_db, ["readings"], sink={"path": str(blocker / "lake")})
    config = write_config(tmp_path, data)
    assert triggers("install", config).returncode == 0
    written = insert_readings(app_db, 120)

    failed = run_cli("flush", "--config", str(config), "--timeout", "2")

    assert failed.returncode == 4, output(failed)
    message = re.search(r"error: (\d+) file\(s\), (\d+) bytes still pending", failed.stderr)
    assert message, failed.stderr
    waiting = spooled(tmp_path)
    assert int(message.group(1)) == len(waiting) >= 1
    assert int(message.group(2)) == sum(p.stat().st_size for p in waiting)
    assert str(blocker / "lake") in failed.stderr
    assert "stay in the spool" in failed.stderr
    assert "flushed" not in failed.stdout

    data["sink"]["path"] = str(tmp_path / "lake")
    write_config(tmp_path, data)
    fixed = run_cli("flush", "--config", str(config))

    assert fixed.returncode == 0, fixed.stderr
    assert spooled(tmp_path) == []
    assert_exact(tmp_path / "lake", app_db, READINGS, written)


# --- one agent per state directory ------------------------------------------------


def test_a_second_agent_on_the_same_state_directory_exits_3(tmp_path: Path,
                                                            app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"]))
    state_dir = tmp_path / "state"
    with AgentProcess(config) as first:
        first.wait_for((state_dir / "control.sock").exists, "the control socket")

        second = run_cli("run", "--config", str(config))

        assert second.returncode == 3, output(second)
        assert f"state directory {str(state_dir)!r} is in use by another edge-agent" in (
            second.stderr)
        assert f"pid {first.proc.pid}" in second.stderr
        assert first.running(), "the refused second agent must not disturb the first"
        first.send(signal.SIGTERM)
        assert first.wait_exit() == 0, first.log_tail()
    assert not (state_dir / "control.sock").exists()


# --- status -----------------------------------------------------------------------


def test_status_after_a_flush_shows_the_source_tables_and_positions(tmp_path: Path,
                                                                    app_db: Path) -> None:
    config = installed(tmp_path, app_db, ["readings", "events"])
    insert_readings(app_db, 40)
    assert run_cli("flush", "--config", str(config)).returncode == 0
    last = read_changes(tmp_path / "lake")[-1]
    shipped = lake_files(tmp_path / "lake")[-1].relative_to(tmp_path / "lake").as_posix()

    text = run_cli("status", "--config", str(config))
    as_json = run_cli("status", "--config", str(config), "--json")

    assert text.returncode == 0, text.stderr
    assert "daemon not running" in text.stdout
    assert f"source app ({app_db}): durable position {last['_pos']}" in text.stdout
    assert f"  readings: position {last['_pos']}, spooled 0 file(s) / 0B" in text.stdout
    assert re.search(rf"last shipped {re.escape(shipped)} \(\d+ s ago\)", text.stdout)
    assert "  events: position none yet" in text.stdout
    assert "None" not in text.stdout
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["daemon_running"] is False
    assert report["state_dir"] == str(tmp_path / "state")
    (src,) = report["sources"]
    assert (src["source"], src["path"], src["durable_pos"]) == ("app", str(app_db),
                                                               last["_pos"])
    assert src["waiting_in_source_log"] == 0
    assert src["last_error"] is None and src["table_errors"] is None
    tables = {t["table"]: t for t in src["tables"]}
    assert list(tables) == ["readings", "events"]
    assert tables["readings"]["last_captured_pos"] == last["_pos"]
    assert tables["readings"]["last_shipped_file"] == shipped
    assert tables["events"]["last_captured_pos"] is None
    assert report["spool"]["ready_files"] == 0


def test_status_on_a_state_directory_that_never_ran_says_so(tmp_path: Path,
                                                            app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"]))

    done = run_cli("status", "--config", str(config))

    assert done.returncode == 1
    assert done.stdout == ""
    assert f"no state in {str(tmp_path / 'state')!r}" in done.stderr
    assert "edge-agent run" in done.stderr
    assert not (tmp_path / "state").exists(), "status only reads"


# --- help -------------------------------------------------------------------------


def subcommands() -> list[str]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("edge-agent has no subcommands")


@pytest.mark.parametrize("command", subcommands())
def test_every_command_has_help_with_an_example(command: str) -> None:
    done = run_cli(command, "--help")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: edge-agent {command} ")
    assert "example" in done.stdout
    example = done.stdout[done.stdout.index("example"):]
    assert f"edge-agent {command}" in example


def test_top_level_help_lists_every_command() -> None:
    done = run_cli("--help")

    assert done.returncode == 0
    for command in subcommands():
        assert re.search(rf"^\s+{command}\s", done.stdout, re.M), command


# --- the daemon keeps running on what is valid ------------------------------------


def test_the_daemon_captures_the_valid_table_and_reports_the_unknown_one(
        tmp_path: Path, app_db: Path) -> None:
    # Neither polling nor file age would ship anything in the test: only the flush does.
    config = write_config(tmp_path, config_dict(
        tmp_path, app_db, ["readings", "nope"], agent={"poll_interval": "1h"},
        buffer={"max_file_age": "1h"}))

    def status() -> dict[str, Any]:
        done = run_cli("status", "--config", str(config), "--json")
        # Exit 5: unhealthy, because table 'nope' cannot be captured; named on stderr.
        assert done.returncode == 5, done.stderr
        assert "unhealthy: source app: table 'nope' not found" in done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    with AgentProcess(config) as agent:
        agent.wait_for((tmp_path / "state" / "control.sock").exists, "the control socket")
        wait_until(lambda: status()["sources"][0]["table_errors"] is not None,
                   "the unknown table in the status", describe=agent.log_tail)
        written = insert_readings(app_db, 200, per_transaction=20)

        flushed = run_cli("flush", "--config", str(config))
        report = status()

        assert flushed.returncode == 0, output(flushed)
        assert "flushed" in flushed.stdout
        assert agent.running()
        assert_exact(tmp_path / "lake", app_db, READINGS, written)
        assert report["daemon_running"] is True
        (src,) = report["sources"]
        assert "table 'nope' not found" in src["table_errors"]
        assert src["last_error"] is None
        assert tables_with_triggers(app_db) == {"readings"}
        agent.send(signal.SIGTERM)
        assert agent.wait_exit() == 0, agent.log_tail()


def test_flush_with_a_missing_database_is_not_reported_as_success(tmp_path: Path) -> None:
    missing = tmp_path / "gone.db"
    config = write_config(tmp_path, config_dict(tmp_path, missing, ["readings"]))
    done = run_cli("flush", "--config", str(config))
    assert done.returncode == 5, output(done)  # a failing source, nothing pending
    assert str(missing) in done.stderr and "sources.path" in done.stderr


def test_snapshot_that_runs_out_of_time_says_so(tmp_path: Path, app_db: Path) -> None:
    insert_readings(app_db, 3000)
    config = installed(tmp_path, app_db, ["readings"], source={"snapshot": "never",
                                                                "page_rows": 10})
    done = run_cli("snapshot", "--config", str(config), "--timeout", "0.01")
    assert done.returncode == 4, output(done)
    assert "snapshot not finished" in done.stderr and "--timeout" in done.stderr


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_timeout_out_of_range_says_what_is_allowed(value: str, tmp_path: Path) -> None:
    """Issue 12.7: `--timeout 0` was told "use seconds between 0 and 604800"."""
    done = run_cli("flush", "--timeout", value, "--config", str(tmp_path / "c.toml"))
    assert done.returncode == 2
    assert "above 0 and at most 604800" in done.stderr
    assert "'" not in done.stderr.splitlines()[-1]


@pytest.mark.parametrize("command", [["run"], ["flush", "--timeout", "2"]])
def test_an_unwritable_state_dir_is_one_line_naming_the_key(
        command: list[str], tmp_path: Path, app_db: Path) -> None:
    """Issue 12.4: `run` and `flush` gave an OSError traceback for agent.lock. (Tests run
    as root, so the directory is made uncreatable: below a regular file.)"""
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file, not a directory\n")
    data = config_dict(tmp_path, app_db, ["readings"], agent={"state_dir": str(blocker / "s")})
    config = write_config(tmp_path, data)

    done = run_cli(*command, "--config", str(config), timeout=60)

    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert f'agent.state_dir = "{blocker / "s"}"' in done.stderr
    assert "writ" in done.stderr.splitlines()[-1]


def test_flush_with_nothing_pending_but_a_failing_source_exits_5(tmp_path: Path,
                                                                  app_db: Path) -> None:
    """Issue 12.3: this was exit 4 with "0 file(s), 0 bytes still pending"."""
    data = config_dict(tmp_path, tmp_path / "gone.db", ["readings"])
    config = write_config(tmp_path, data)

    done = run_cli("flush", "--config", str(config), "--timeout", "2")

    assert done.returncode == 5, output(done)
    assert "still pending" not in done.stderr
    assert "capture is failing" in done.stderr and "gone.db" in done.stderr


def test_snapshot_of_all_tables_takes_what_it_can_and_names_the_rest(
        tmp_path: Path, app_db: Path) -> None:
    """Issue 12.6: one table without a primary key made `snapshot` refuse every table,
    with a hint (`triggers install`) that install refuses too."""
    con = sqlite3.connect(app_db)
    con.execute("CREATE TABLE nopk (a TEXT, b TEXT)")
    con.commit()
    con.close()
    insert_readings(app_db, 30)
    installed(tmp_path, app_db, ["readings"], source={"snapshot": "never"})
    (tmp_path / "both").mkdir()  # the same state and lake, both tables listed
    data = config_dict(tmp_path, app_db, ["readings", "nopk"], source={"snapshot": "never"})
    both = write_config(tmp_path / "both", data)

    done = run_cli("snapshot", "--config", str(both), "--timeout", "30")

    assert done.returncode == 5, output(done)
    assert "'nopk' has no PRIMARY KEY" in done.stderr
    assert "triggers install" not in done.stderr
    snapped = [c for c in read_changes(tmp_path / "lake") if c["_op"] == "r"]
    assert len(snapped) == 30


def test_config_check_finds_what_only_the_device_can_tell(tmp_path: Path, app_db: Path) -> None:
    """Issue 12.8: an unknown table, a missing cursor column and an unwritable lake
    were all "ok"."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file\n")
    data = config_dict(tmp_path, app_db, [], sink={"path": str(blocker / "lake")})
    del data["sources"][0]["tables"]
    config = write_config(tmp_path, data)
    with config.open("a", encoding="utf-8") as f:  # the long form, to mix the modes
        f.write('[[sources.tables]]\nname = "readings"\n[[sources.tables]]\nname = "nope"\n'
                '[[sources.tables]]\nname = "events"\nmode = "timestamp"\n'
                'cursor = "no_col"\n')

    done = run_cli("config", "check", str(config))

    assert done.returncode == 2, output(done)
    assert "table 'nope' not found" in done.stderr
    assert "no column 'no_col'" in done.stderr and "sources.tables.cursor" in done.stderr
    assert f'sink.path = "{blocker / "lake"}"' in done.stderr
    assert "ok:" not in done.stdout


def test_config_check_takes_config_like_every_command(tmp_path: Path, app_db: Path) -> None:
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"]))

    by_flag = run_cli("config", "check", "--config", str(config))
    by_env = run_cli("config", "check", EDGE_AGENT_CONFIG=str(config))

    assert by_flag.returncode == 0, output(by_flag)
    assert by_env.returncode == 0, output(by_env)
    assert f"ok: {config}" in by_env.stdout


def test_status_watch_repeats_until_interrupted(tmp_path: Path, app_db: Path) -> None:
    import signal
    import subprocess

    from tests.children import agent_cmd, agent_env

    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"]))
    assert run_cli("flush", "--config", str(config)).returncode == 0
    watch = subprocess.Popen(agent_cmd("status", "--config", str(config), "--json",
                                       "--watch", "0.1"),
                             env=agent_env(), stdout=subprocess.PIPE, text=True)
    assert watch.stdout is not None
    frames = [json.loads(watch.stdout.readline()) for _ in range(3)]
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=60) == 0
    watch.stdout.close()
    assert [f["device_id"] for f in frames] == ["gw-test"] * 3


def test_a_flush_whose_capture_did_not_catch_up_is_pending_not_failing() -> None:
    """Exit 4 with what to do, not "flushed" (and not exit 5: nothing is failing)."""
    import pytest

    from edge_agent.cli import _refuse_unfinished
    from edge_agent.errors import PendingError
    from edge_agent.runtime.agent import FlushResult

    with pytest.raises(PendingError, match=r"did not catch up.*--timeout"):
        _refuse_unfinished(FlushResult(0, 0, [], caught_up=False), "")
    _refuse_unfinished(FlushResult(0, 0, []), "")  # caught up, nothing pending: fine

"""The user docs stay in step with the code: the CLI, the config tree, the bronze
envelope, and the links between the pages."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from edge_agent.bronze.schema import ENVELOPE, UNFIT
from edge_agent.cli import build_parser
from edge_agent.config import (
    AgentConfig,
    BufferConfig,
    ClockConfig,
    SinkConfig,
    SourceConfig,
    TimestampTable,
    config_from_dict,
)
from edge_agent.config_control import ControlConfig
from edge_agent.errors import ConfigErrors

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CLI_MD = DOCS / "cli.md"
CONFIG_MD = DOCS / "configuration.md"
BRONZE_MD = DOCS / "bronze-format.md"
EXAMPLE_CONFIG = ROOT / "config" / "edge-agent.example.toml"

SECTIONS = {
    "[agent]": AgentConfig,
    "[buffer]": BufferConfig,
    "[clock]": ClockConfig,
    "[[sources]]": SourceConfig,
    "[[sources.tables]]": TimestampTable,
    "[sink]": SinkConfig,
    "[control]": ControlConfig,
}
# The example config shows the short form of `tables`; its long form is in the docs.
EXAMPLE_SECTIONS = [s for s in SECTIONS if s != "[[sources.tables]]"]
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("edge-agent has no subcommands")


# --- the command line ----------------------------------------------------------


def test_top_level_help_in_cli_md_is_the_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal width
    help_text = build_parser().format_help().strip()
    block = re.search(r"```console\n\$ edge-agent --help\n(.*?)```", read(CLI_MD), re.S)
    assert block, "docs/cli.md: add a ```console block starting with `$ edge-agent --help`"
    assert block.group(1).strip() == help_text, (
        "docs/cli.md: the `edge-agent --help` output changed; paste the new output "
        "(COLUMNS=80 edge-agent --help)"
    )


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_has_a_section_with_its_usage(name: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = read(CLI_MD)
    assert re.search(rf"^## `{re.escape(name)}\b", text, re.M), (
        f"docs/cli.md: add a section '## `{name}`'"
    )
    usage = subcommands()[name].format_usage().strip()
    assert usage in text, f"docs/cli.md: add or update the usage line: {usage}"


def test_every_option_and_choice_is_documented() -> None:
    text = read(CLI_MD)
    parsers = {"edge-agent": build_parser(), **subcommands()}
    missing = []
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            words = list(action.option_strings)
            if not action.option_strings and action.choices:
                words += [str(c) for c in action.choices]
            missing += [f"{name} {w}" for w in words if f"`{w}" not in text and f" {w}" not in text]
    assert not missing, f"docs/cli.md does not mention: {missing}"


def test_exit_codes_are_documented() -> None:
    from edge_agent import errors

    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    text = read(CLI_MD)
    for code in sorted(codes):
        assert re.search(rf"^\| {code} \|", text, re.M), f"docs/cli.md: exit code {code}"


# --- the configuration ---------------------------------------------------------


def config_sections() -> dict[str, str]:
    """Text of each '## `[section]`' part of docs/configuration.md."""
    parts = re.split(r"^## ", read(CONFIG_MD), flags=re.M)
    found = {}
    for part in parts:
        heading = part.split("\n", 1)[0]
        for section in SECTIONS:
            if heading.strip() == f"`{section}`":
                found[section] = part
    return found


def loader_keys(section: str) -> set[str]:
    """The keys the loader accepts in a section, from its own "unknown key" message
    (for [[sources]], of every kind of source)."""
    if section == "[[sources]]":
        return _loader_keys(section, {"path": "x.db"}) | _loader_keys(
            section, {"kind": "postgres", "dsn": "host=db dbname=erp"})
    return _loader_keys(section, {"path": "x.db"})


def _loader_keys(section: str, kind: dict[str, object]) -> set[str]:
    probe = "zz_docs_probe"
    source: dict[str, object] = {"name": "s", "tables": ["t"], **kind}
    data: dict[str, object] = {"sources": [source]}
    if section == "[[sources]]":
        source[probe] = 1
        field = f"sources[0].{probe}"
    elif section == "[[sources.tables]]":
        source["tables"] = [{"name": "t", "mode": "timestamp", "cursor": "c", probe: 1}]
        field = f"sources[0].tables[0].{probe}"
    else:
        data[section.strip("[]")] = {probe: 1}
        field = f"{section.strip('[]')}.{probe}"
    with pytest.raises(ConfigErrors) as info:
        config_from_dict(data)
    fixes = [e.fix for e in info.value.errors if e.field == field]
    assert fixes and "known keys here: " in fixes[0], info.value
    return set(fixes[0].split("known keys here: ", 1)[1].split(", "))


def config_keys(section: str) -> list[str]:
    """Every dataclass field of a section that is a key in the file, and every key the
    loader accepts. Fields the file spells differently (nested tables) are left out."""
    accepted = loader_keys(section)
    fields = [f.name for f in dataclasses.fields(SECTIONS[section]) if f.name in accepted]
    return fields + sorted(accepted - set(fields))


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_config_key_is_in_configuration_md(section: str) -> None:
    text = config_sections().get(section)
    assert text is not None, f"docs/configuration.md: add a section '## `{section}`'"
    missing = [k for k in config_keys(section) if not re.search(rf"^\| `{k}` \|", text, re.M)]
    assert not missing, f"docs/configuration.md: document {section} {missing} in its table"


@pytest.mark.parametrize("section", EXAMPLE_SECTIONS)
def test_every_config_key_is_in_the_example_config(section: str) -> None:
    text = read(EXAMPLE_CONFIG)
    missing = [k for k in config_keys(section)
               if not re.search(rf"^[ \t]*#?[ \t]*{k}[ \t]*=", text, re.M)]
    assert not missing, (
        f"{EXAMPLE_CONFIG.name}: show {section} {missing} (commented out if optional)"
    )


# --- the bronze format ---------------------------------------------------------


@pytest.mark.parametrize("column", [name for name, _ in ENVELOPE] + [UNFIT])
def test_every_envelope_column_is_in_bronze_format_md(column: str) -> None:
    assert re.search(rf"^\| `{column}` \|", read(BRONZE_MD), re.M), (
        f"docs/bronze-format.md: describe {column} in the columns table"
    )


# --- links ---------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = CODE_SPAN.sub(lambda m: m.group(0)[1:-1], heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", read(path)).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def links(path: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", read(path)))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(page: str) -> None:
    source = DOCS / page
    broken = []
    for target in links(source):
        file_part, _, anchor = target.partition("#")
        path = (source.parent / file_part).resolve() if file_part else source
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"docs/{page}: {broken}"


def test_docs_pages_exist() -> None:
    for name in ("configuration", "cli", "bronze-format", "clock", "operations", "design"):
        assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"


def _documented_defaults() -> dict[str, str]:
    """`| `--opt VALUE` | `default` | ... |` rows of cli.md by (section, option)."""
    found: dict[str, str] = {}
    section = ""
    for line in read(CLI_MD).splitlines():
        if line.startswith("## `"):
            section = line.split("`")[1]
        row = re.match(r"^\| `(--[a-z-]+)[^`]*` \| `([^`]+)` \|", line)
        if row:
            found[f"{section} {row.group(1)}"] = row.group(2)
    return found


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_help_and_cli_md_give_the_same_defaults(name: str) -> None:
    """Issue 12.17: `demo --seconds` and `flush --timeout` disagreed between --help and
    the docs. Every option whose default cli.md names shows the same in its help."""
    documented = _documented_defaults()
    for action in subcommands()[name]._actions:
        option = next((o for o in action.option_strings if o.startswith("--")), None)
        if option in (None, "--help", "--config") or action.default in (None, False):
            continue
        wanted = documented.get(f"{name} {option}")
        assert wanted is not None, f"cli.md: `{name}` has no row with the default of {option}"
        shown = f"{action.default:g}" if isinstance(action.default, float) else str(
            action.default)
        assert wanted == shown, f"{name} {option}: cli.md says {wanted}, the code {shown}"
        assert f"(default {wanted})" in (action.help or ""), f"{name} {option}: help"


def test_every_subcommand_action_is_explained_in_its_help() -> None:
    """`triggers --help` listed {install,verify,uninstall} with no word on them."""
    for name, parser in subcommands().items():
        for action in parser._actions:
            if action.choices and not action.option_strings:
                assert action.help, f"{name}: its {sorted(action.choices)} have no help"

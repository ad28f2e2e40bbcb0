#!/usr/bin/env bash
# The arm64 environment of the arm64 targets (make test-arm64, test-arm64-smoke,
# test-deb, wheels-arm64): ../shared/tools/arm64-env.sh's Debian 12 arm64 root file
# system under qemu, with the servers the test suite starts taken from that system's
# own packages, the project's runtime and test requirements as aarch64 wheels (read
# from pyproject.toml), and the project's freshly built wheel installed into its venv.
# Idempotent: the first run takes ~7 min, later runs only reinstall the wheel.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BIN:-$root/.venv/bin}
arm64_env=${ARM64_ENV:-$root/../shared/tools/arm64-env.sh}
[ -f "$arm64_env" ] || { echo "arm64-env.sh not found at $arm64_env (set ARM64_ENV)" >&2; exit 1; }

# mosquitto (+ mosquitto_passwd), openssl, postgresql (initdb, pg_ctl, pg_recvlogical):
# tests/servers.py; systemd (systemd-analyze) and shellcheck: the packaging tests;
# procps and adduser: what the .deb depends on beyond python3.11; default-jre-headless:
# the lake tests of `lake silver --engine spark` (Spark local mode).
# ARM64_EXTRA_DEBS: more, for one target (make wheels-arm64 adds a C compiler).
export ARM64_DEBS="mosquitto openssl postgresql systemd shellcheck procps adduser default-jre-headless ${ARM64_EXTRA_DEBS:-}"
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
"$bin/python" scripts/arm64-requirements.py test > "$requirements"
ARM64_REQUIREMENTS=$requirements bash "$arm64_env" setup
# The root file system's /etc/hosts names localhost only (setup rewrites it); Spark
# (the lake tests) resolves this machine's host name, as Debian's own /etc/hosts allows.
rootfs=${ARM64_ROOTFS:-/var/tmp/arm64-rootfs}
grep -qw "$(hostname)" "$rootfs/etc/hosts" || printf '127.0.1.1\t%s\n' "$(hostname)" >> "$rootfs/etc/hosts"

# ARM64_INSTALL_PROJECT=0: leave /opt/venv's edge_agent alone (make wheels-arm64 tests
# its wheels in venvs of their own, and may run beside a suite that uses this one).
[ "${ARM64_INSTALL_PROJECT:-1}" = 1 ] || exit 0
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
wheel=dist/edge_agent-$version-py3-none-any.whl
EDGE_AGENT_MYPYC=0 "$bin/pip" wheel --quiet --no-deps -w dist .
bash "$arm64_env" run /opt/venv/bin/pip install --quiet --no-deps --force-reinstall "$wheel"

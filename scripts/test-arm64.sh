#!/usr/bin/env bash
# Run the test suite on aarch64 under qemu, in the arm64 root file system
# (scripts/arm64-setup.sh): the servers are that system's own arm64 packages, the
# Python packages its aarch64 wheels.
#
#   scripts/test-arm64.sh full     the whole suite (~40 min under emulation)
#   scripts/test-arm64.sh smoke    the CI subset: a kill -9 run, MQTT end to end and a
#                                  PostgreSQL capture, so a dependency without an aarch64
#                                  wheel or an x86-only assumption fails CI (a few minutes)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
arm64_env=${ARM64_ENV:-$root/../shared/tools/arm64-env.sh}

SMOKE=(
    "tests/test_kill9.py::test_sigkill_at_random_moments_loses_and_duplicates_nothing"
    "tests/mqtt/test_end_to_end.py::test_thousands_of_changes_land_exactly_once"
    "tests/capture/test_pg_trigger.py::test_changes_reach_the_lake_with_their_transaction"
)
case ${1:-smoke} in
    full) selection=() ;;
    smoke) selection=("${SMOKE[@]}") ;;
    *) echo "usage: $0 full|smoke" >&2; exit 2 ;;
esac

bash scripts/arm64-setup.sh
start=$SECONDS
bash "$arm64_env" run python -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine(); print("python", sys.version.split()[0], "on", platform.machine())'
# The root file system is bound onto itself in a private mount namespace, so that "/"
# inside the chroot is a mount point: tests that `unshare -m` and mount (test_wal's
# read-only mount) need that, as on a real system. Nothing stays mounted afterwards.
# -p no:cacheprovider: nothing written into the (shared, bind-mounted) work tree.
rootfs=${ARM64_ROOTFS:-/var/tmp/arm64-rootfs}
# shellcheck disable=SC2016  # expanded by the inner bash
unshare --mount --propagation private -- bash -c 'mount --bind "$1" "$1" && shift && exec "$@"' \
    _ "$rootfs" bash "$arm64_env" pytest -q -p no:cacheprovider "${selection[@]}"
echo "arm64 ${1:-smoke}: $((SECONDS - start)) s under emulation"

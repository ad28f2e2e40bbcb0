#!/usr/bin/env bash
# `make test-deb`: build both .debs, lintian each (clean: every override is justified in
# packaging/deb/lintian-overrides), then install the arm64 one with dpkg inside the arm64
# root file system and check it there (scripts/check-deb-installed.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
arm64_env=${ARM64_ENV:-$root/../shared/tools/arm64-env.sh}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)

bash scripts/build-deb.sh arm64 amd64
for arch in arm64 amd64; do
    deb=dist/edge-agent_${version}-1_$arch.deb
    echo "== lintian $deb"
    # --fail-on warning: any warning or error not justified in the overrides fails.
    lintian --allow-root --fail-on error,warning --tag-display-limit 0 "$deb" ||
        { echo "lintian: $deb has findings (above)" >&2; exit 1; }
    echo "lintian: clean ($(lintian --allow-root --show-overrides "$deb" | grep -c '^O:') overridden findings, each justified)"
done
bash scripts/arm64-setup.sh
bash "$arm64_env" run bash scripts/check-deb-installed.sh "dist/edge-agent_${version}-1_arm64.deb"

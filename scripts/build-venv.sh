#!/usr/bin/env bash
# Build the self-contained virtualenv the .deb installs under /opt/edge-agent, for
# Debian 12 / Raspberry Pi OS Bookworm (python3.11, glibc 2.36), from binary wheels
# only, on any host: pip resolves and unpacks the TARGET architecture's wheels
# (--platform), so an arm64 venv is made on an x86_64 host without emulation.
#
#   scripts/build-venv.sh ARCH STAGE WHEEL [EXTRAS]
#     ARCH    amd64 | arm64 (Debian names)
#     STAGE   output root; the venv lands in STAGE/opt/edge-agent
#     WHEEL   the project's wheel (dist/edge_agent-*-py3-none-any.whl)
#     EXTRAS  the wheel's extras to include, comma separated (default: s3,postgres)
#
# The venv's interpreter is the target's /usr/bin/python3.11 (the package depends on
# it); bin/edge-agent is a launcher script; bytecode is compiled by the postinst on
# the device, not shipped. packaging/venv-prune.txt lists what is left out.
set -euo pipefail

arch=${1:?ARCH (amd64|arm64)} stage=${2:?STAGE dir} wheel=${3:?project wheel} extras=${4-s3,postgres}
root=$(cd "$(dirname "$0")/.." && pwd)
pip=${PIP:-$root/.venv/bin/pip}
prefix=/opt/edge-agent
pyver=3.11          # Debian 12 and Raspberry Pi OS Bookworm
glibc_max=36        # their glibc: manylinux_2_17 .. manylinux_2_36 wheels run there

case $arch in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "unknown ARCH '$arch' (amd64|arm64)" >&2; exit 2 ;;
esac

platforms=(--platform "manylinux2014_$machine")
for ((minor = 17; minor <= glibc_max; minor++)); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done

venv=$stage$prefix
site=$venv/lib/python$pyver/site-packages
rm -rf "$venv"
mkdir -p "$venv/bin" "$site"

spec=$(realpath "$wheel")
[ -n "$extras" ] && spec="${spec}[$extras]"
"$pip" install --quiet --disable-pip-version-check --no-compile --only-binary=:all: \
    "${platforms[@]}" --python-version "$pyver" --implementation cp --abi "cp${pyver/./}" \
    --target "$site" "$spec"

# Console scripts pip wrote for the host interpreter: the agent gets its own launcher.
rm -rf "${site:?}/bin"

# Leave out what the agent never loads (one glob per line, comments allowed).
while read -r pattern; do
    case $pattern in ''|'#'*) continue ;; esac
    # shellcheck disable=SC2086  # the glob must expand
    (cd "$site" && rm -rf -- $pattern)
done < "$root/packaging/venv-prune.txt"

# Wheels cannot hold symlinks, so shared libraries come as identical copies
# (libfoo.so, libfoo.so.N, libfoo.so.N.M): keep the longest name, link the others to it.
declare -A kept=()
while IFS= read -r -d '' lib; do
    key="$(dirname "$lib") $(sha256sum "$lib" | cut -c1-64)"
    if [ -n "${kept[$key]:-}" ]; then ln -sfn "$(basename "${kept[$key]}")" "$lib"; else kept[$key]=$lib; fi
done < <(find "$site" -name 'lib*.so*' -type f -print0 | sort -rz)

# Debian practice (dh_strip): no symbol tables in shipped objects. The wheels' own
# builds keep them in some extension modules; stripping cut ~22 MB on aarch64.
# Shared objects need no execute bit either.
strip="strip"; [ "$machine" = "$(uname -m)" ] || strip=$machine-linux-gnu-strip
command -v "$strip" >/dev/null || { echo "$strip missing: run scripts/install-packaging-deps.sh" >&2; exit 1; }
find "$site" -name '*.so*' -type f -print0 | xargs -0 -r "$strip" --strip-unneeded
find "$site" -name '*.so*' -type f -exec chmod 0644 {} +

cat > "$venv/pyvenv.cfg" <<EOF
home = /usr/bin
include-system-site-packages = false
version = $pyver
EOF
ln -sfn "/usr/bin/python$pyver" "$venv/bin/python3"
ln -sfn python3 "$venv/bin/python"
cat > "$venv/bin/edge-agent" <<EOF
#!$prefix/bin/python3
import sys

from edge_agent.cli import main

sys.exit(main())
EOF
chmod 0755 "$venv/bin/edge-agent"
find "$venv" -type d -exec chmod 0755 {} +
find "$venv" -type f ! -perm -u+x -exec chmod 0644 {} +

echo "venv for $arch ($machine): $(du -sh --apparent-size "$venv" | cut -f1) in $venv"

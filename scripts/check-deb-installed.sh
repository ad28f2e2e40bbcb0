#!/usr/bin/env bash
# Install an edge-agent .deb with dpkg on THIS Debian system (run it as root inside the
# arm64 root file system: scripts/test-deb-arm64.sh) and check what a gateway gets:
# the command, `config check`, the demo run as the service user, the unit (verify and
# security score), the user, the state directory and the config's permissions, the
# service not enabled, then remove (state kept) and purge (state gone).
#
#   scripts/check-deb-installed.sh dist/edge-agent_<version>-1_<arch>.deb
set -euo pipefail

deb=${1:?the .deb to install}
unit=/lib/systemd/system/edge-agent.service
max_exposure=2.0
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '== %s\n' "$*"; }

step "dpkg -i $deb ($(dpkg --print-architecture))"
dpkg -i "$deb"
[ "$(dpkg-query -W -f='${Status}' edge-agent)" = "install ok installed" ] || fail "not installed"
echo "installed size: $(du -sm /opt/edge-agent | cut -f1) MiB in /opt/edge-agent" \
     "(Installed-Size $(($(dpkg-query -W -f='${Installed-Size}' edge-agent) / 1024)) MiB)"

step "the command, the user, the state directory, the config"
[ "$(readlink -f /usr/bin/edge-agent)" = /opt/edge-agent/bin/edge-agent ] || fail "/usr/bin/edge-agent link"
getent passwd edge-agent >/dev/null || fail "no edge-agent user"
[ "$(stat -c '%U:%G %a' /var/lib/edge-agent)" = "edge-agent:edge-agent 750" ] || fail "state dir: $(stat -c '%U:%G %a' /var/lib/edge-agent)"
[ "$(stat -c '%U:%G %a' /etc/edge-agent/config.toml)" = "root:edge-agent 640" ] || fail "config: $(stat -c '%U:%G %a' /etc/edge-agent/config.toml)"
dpkg-query --showformat='${Conffiles}\n' --show edge-agent | grep -q ' /etc/edge-agent/config.toml ' || fail "config is not a conffile"
python_machine=$(/opt/edge-agent/bin/python3 -c 'import platform; print(platform.machine())')
echo "venv interpreter: $python_machine"

step "installing did not enable or start the service"
if [ -e /etc/systemd/system/multi-user.target.wants/edge-agent.service ]; then fail "service enabled on install"; fi

step "edge-agent config check: the shipped config names a lake that is not there yet"
if out=$(runuser -u edge-agent -- edge-agent config check 2>&1); then fail "unconfigured config passed: $out"; fi
echo "$out"
grep -q 'sink.path' <<<"$out" || fail "config check did not name the unconfigured sink"

step "edge-agent config check: after the operator made the database and the lake"
install -d -o edge-agent -g edge-agent /var/lib/app /srv/lake
runuser -u edge-agent -- /opt/edge-agent/bin/python3 -c 'import sqlite3; c = sqlite3.connect("/var/lib/app/plant.db"); c.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, v REAL)"); c.execute("CREATE TABLE alarms (id INTEGER PRIMARY KEY, msg TEXT)"); c.commit()'
runuser -u edge-agent -- edge-agent config check
rm -rf /var/lib/app /srv/lake

step "edge-agent demo (as the service user)"
demo=$(mktemp -d); chown edge-agent: "$demo"
runuser -u edge-agent -- edge-agent demo --seconds 5 --dir "$demo/demo" | tee "$demo/out"
grep -q 'rebuilt from the lake (matches)' "$demo/out" || fail "demo: lake does not match the app"
if grep -q 'DOES NOT match' "$demo/out"; then fail "demo: lake does not match the app"; fi
rm -rf "$demo"

step "systemd-analyze verify $unit"
verify=$(systemd-analyze verify "$unit" 2>&1 | grep -F edge-agent.service || true)
[ -z "$verify" ] || fail "verify: $verify"

step "systemd-analyze security --offline=true $unit"
score=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p')
echo "exposure: $score"
awk -v s="${score% *}" -v m="$max_exposure" 'BEGIN { exit !(s != "" && s <= m) }' || fail "exposure '$score' above $max_exposure"

step "dpkg -r keeps config and state; dpkg -P removes them"
touch /var/lib/edge-agent/marker
dpkg -r edge-agent
[ -e /var/lib/edge-agent/marker ] || fail "remove deleted the state"
[ -e /etc/edge-agent/config.toml ] || fail "remove deleted the config"
[ ! -e /opt/edge-agent ] || fail "remove left /opt/edge-agent: $(find /opt/edge-agent | head -5)"
dpkg -P edge-agent
[ ! -e /var/lib/edge-agent ] || fail "purge kept the state"
[ ! -e /etc/edge-agent/config.toml ] || fail "purge kept the config"
echo "OK: $deb installs, runs on $python_machine, removes and purges cleanly"

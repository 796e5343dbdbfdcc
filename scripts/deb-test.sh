#!/usr/bin/env bash
# The Debian package end to end (make test-deb; `make test` runs it after its other steps):
# builds it (scripts/build-deb.sh: static release binary, debhelper, lintian without errors),
# installs it on this machine with dpkg -i, checks what an operator relies on, runs the installed
# daemon with --metrics in a namespace lab and checks every metric name the Grafana dashboard and
# the Prometheus rules use against its scrape, then purges the package and checks that everything
# it installed is gone. Last line: `deb: N passed, M failed[, K skipped]`.
#
#   scripts/deb-test.sh [--keep-deb DIR]
#
# Needs root (dpkg -i, namespaces); without root it skips and says why. If a package named
# mcrelay is already installed here, the install part is skipped (it would replace it).
# Exit: 0 all passed, 1 a check failed, 3 its own tooling failed (a build, a lab, a command
# that should exist). Cleans up (daemon, lab, package, tmp, the user it created) on any exit.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
export PATH="$PATH:/opt/swift/usr/bin"

keep_deb=
[ "${1:-}" = "--keep-deb" ] && keep_deb=${2:?}

passed=0 failed=0 skipped=0
t0=$(date +%s)
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "skip $*"; }
# check DESCRIPTION COMMAND...: passes when the command exits 0.
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
summary() { echo "deb: $passed passed, $failed failed$([ $skipped -gt 0 ] && echo ", $skipped skipped")"; }
tooling() { echo "deb-test: TOOLING FAILED: $*" >&2; failed=$((failed + 1)); exit 3; }

if [ "$(id -u)" -ne 0 ]; then
    skip "the package test needs root (dpkg -i, network namespaces)"
    summary
    exit 0
fi
for tool in dpkg dpkg-deb dpkg-query timeout ip python3 man readelf; do
    command -v "$tool" >/dev/null || tooling "$tool not found (scripts/install-deps.sh deb)"
done

tmp=$(mktemp -d /tmp/mcrelay-deb-test.XXXXXX)
prefix="mdeb$$"; prefix=${prefix:0:11}
port=$((19464 + $$ % 500))
installed_by_us=0 daemon_pid= lab_up=0 user_existed=0 build_s= build_pid=
getent passwd mcrelay >/dev/null && user_existed=1

# dpkg, waiting up to 2 minutes for the dpkg lock (another apt-get on this machine holds it).
dpkg_wait() {
    local i
    for i in $(seq 60); do
        timeout 300 dpkg "$@" && return 0
        local rc=$?
        fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock >/dev/null 2>&1 || return $rc
        echo "deb-test: dpkg is locked by another process; waiting" >&2
        sleep 2
    done
    return 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$build_pid" ] && kill -0 "$build_pid" 2>/dev/null; then
        kill -TERM -- "-$build_pid" 2>/dev/null || kill -TERM "$build_pid" 2>/dev/null
        wait "$build_pid" 2>/dev/null
    fi
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null
    fi
    [ "$lab_up" = 1 ] && "$here/netns-lab.sh" down "$prefix" >/dev/null 2>&1
    if [ "$installed_by_us" = 1 ] && dpkg-query -W -f='${db:Status-Status}' mcrelay 2>/dev/null | grep -q .; then
        if [ "$(dpkg-query -W -f='${db:Status-Status}' mcrelay 2>/dev/null)" != "not-installed" ]; then
            echo "deb-test: cleanup: dpkg --purge mcrelay" >&2
            dpkg_wait --purge mcrelay >/dev/null 2>&1 || echo "deb-test: cleanup: purge failed" >&2
        fi
    fi
    if [ "$installed_by_us" = 1 ]; then
        # Debian never removes system users on purge; the user is ours, so the test does.
        [ "$user_existed" = 0 ] && getent passwd mcrelay >/dev/null && userdel mcrelay 2>/dev/null
        [ "$user_existed" = 0 ] && getent group mcrelay >/dev/null && groupdel mcrelay 2>/dev/null
        # systemd-tmpfiles --create made it at install; /run is a tmpfs, purge leaves it.
        rmdir /run/mcrelay 2>/dev/null
    fi
    rm -rf "$tmp"
    [ $rc -eq 0 ] && [ $failed -gt 0 ] && rc=1
    # Never a clean summary for a run that did not finish.
    [ $rc -ne 0 ] && [ $failed -eq 0 ] && fail "deb-test did not finish (exit $rc)"
    echo "deb-test: $(( $(date +%s) - t0 )) s in all${build_s:+, the package build ${build_s} s}"
    summary
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. build -------------------------------------------------------------------------------
echo "== build (scripts/build-deb.sh)"
b0=$(date +%s)
# In the background (its own process group) and waited for, so INT/TERM stop it at once.
set -m
timeout 2400 "$here/build-deb.sh" --out "$tmp/out" > "$tmp/build.log" 2>&1 &
build_pid=$!
set +m
wait "$build_pid"; build_rc=$?
build_pid=
if [ $build_rc -ne 0 ]; then
    tail -40 "$tmp/build.log" >&2
    tooling "scripts/build-deb.sh failed (exit $build_rc, log above)"
fi
build_s=$(( $(date +%s) - b0 ))
deb=$(tail -1 "$tmp/build.log")
grep -E '^(build-deb|[EWIX]:)' "$tmp/build.log"
[ -s "$deb" ] || tooling "no package at '$deb'"
pass "package builds and lintian reports no errors ($deb, ${build_s} s)"
[ -n "$keep_deb" ] && mkdir -p "$keep_deb" && cp "$deb" "$keep_deb/"

version=$(dpkg-deb -f "$deb" Version)
code_version=$(sed -n 's/^ *public static let current = "\(.*\)"$/\1/p' Sources/RelayControl/Version.swift)
check "package version $version is Version.swift's $code_version" [ "$version" = "$code_version" ]
depends=$(dpkg-deb -f "$deb" Depends)
check "Depends names liburing, libpcap, libbpf and libc from dpkg-shlibdeps ($depends)" \
    bash -c '[[ "$1" == *liburing2* && "$1" == *libpcap0.8* && "$1" == *libbpf1* && "$1" == *libc6* ]]' _ "$depends"
check "the package ships the XDP object at /usr/lib/mcrelay/mcrelay_xdp.o" \
    bash -c 'dpkg-deb -c "$1" | grep -q " \./usr/lib/mcrelay/mcrelay_xdp\.o$"' _ "$deb"
check "Depends names nothing of Swift" bash -c '! grep -qi swift <<<"$1"' _ "$depends"
check "/etc/mcrelay/config.json is a conffile" bash -c 'dpkg-deb -I "$1" conffiles | grep -qx /etc/mcrelay/config.json' _ "$deb"

dpkg-deb -x "$deb" "$tmp/x" || tooling "dpkg-deb -x failed"
check "the packaged binary needs no library of the Swift toolchain (readelf, ldd)" \
    bash -c '! readelf -d "$1" | grep NEEDED | grep -qiE "swift|Foundation|dispatch|BlocksRuntime" && ! ldd "$1" | grep -q /opt/swift' _ "$tmp/x/usr/bin/mcrelay"
# Proof, not inference: the binary with /opt hidden behind an empty tmpfs (a machine without Swift).
if command -v unshare >/dev/null && unshare --mount bash -c 'mount -t tmpfs none /opt' 2>/dev/null; then
    out=$(timeout 30 unshare --mount bash -c 'mount -t tmpfs none /opt && [ ! -e /opt/swift ] && "$1" --version' _ "$tmp/x/usr/bin/mcrelay" 2>&1)
    check "the packaged binary runs with /opt/swift absent ($out)" [ "$out" = "mcrelay $version" ]
else
    skip "no private mount namespace here (unshare --mount, mount -t tmpfs): cannot hide /opt/swift"
fi

# --- 2. install -----------------------------------------------------------------------------
status=$(dpkg-query -W -f='${db:Status-Status}' mcrelay 2>/dev/null || true)
if [ -n "$status" ] && [ "$status" != "not-installed" ]; then
    skip "a package mcrelay is already installed here ($status): not replacing it; install, metric and purge checks skipped"
    exit 0
fi
echo "== install (dpkg -i)"
installed_by_us=1
if ! dpkg_wait -i "$deb" > "$tmp/install.log" 2>&1; then
    cat "$tmp/install.log" >&2
    fail "dpkg -i $deb"
    exit 1
fi
pass "dpkg -i installs it"
dpkg -L mcrelay | sort > "$tmp/files"
check "dpkg says installed" [ "$(dpkg-query -W -f='${db:Status-Status}' mcrelay)" = installed ]
out=$(timeout 10 mcrelay --version 2>&1)
check "mcrelay --version is 'mcrelay \$(package version)' ($out)" [ "$out" = "mcrelay $(dpkg-query -W -f='${Version}' mcrelay)" ]
check "mcrelay on PATH is /usr/bin/mcrelay" [ "$(command -v mcrelay)" = /usr/bin/mcrelay ]

# Man pages: one per command the help shows, all rendering without groff warnings.
commands=$(python3 - "$(mcrelay --experimental-dump-help)" <<'EOF'
import json, sys
def walk(c, path):
    yield "-".join(path)
    for s in c.get("subcommands", []):
        if s.get("shouldDisplay", True) and s["commandName"] != "help":
            yield from walk(s, path + [s["commandName"]])
print(" ".join(walk(json.loads(sys.argv[1])["command"], ["mcrelay"])))
EOF
) || tooling "cannot list the commands"
missing=() warned=()
for page in $commands; do
    path=$(man -w "$page" 2>/dev/null) || { missing+=("$page"); continue; }
    [ "$path" = "/usr/share/man/man8/$page.8.gz" ] || missing+=("$page@$path")
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$path" 2>&1 >/dev/null | grep -q . && warned+=("$page")
done
check "man -w finds all $(wc -w <<<"$commands") pages in /usr/share/man/man8 (missing: ${missing[*]:-none})" [ ${#missing[@]} -eq 0 ]
check "every page renders without groff warnings (${warned[*]:-none})" [ ${#warned[@]} -eq 0 ]
check "man mcrelay-daemon documents --metrics" bash -c 'MANWIDTH=100 man mcrelay-daemon 2>/dev/null | grep -q -- "--metrics"'

# Config, completions, dashboard, rules, docs.
check "mcrelay config check accepts the shipped /etc/mcrelay/config.json" timeout 10 mcrelay config check /etc/mcrelay/config.json
check "bash completion at /usr/share/bash-completion/completions/mcrelay registers for mcrelay" \
    bash -c 'source /usr/share/bash-completion/completions/mcrelay && complete -p mcrelay >/dev/null'
check "zsh completion at /usr/share/zsh/vendor-completions/_mcrelay (#compdef mcrelay)" \
    bash -c 'head -1 /usr/share/zsh/vendor-completions/_mcrelay | grep -qx "#compdef mcrelay"'
if command -v zsh >/dev/null; then
    check "zsh -n parses the zsh completion" zsh -n /usr/share/zsh/vendor-completions/_mcrelay
fi
if n=$(python3 "$here/check-dashboard.py" /usr/share/mcrelay/grafana/mcrelay-dashboard.json 2>&1); then
    pass "the Grafana dashboard: $n panels, unique ids, on the grid without overlaps, a query each, every \$variable defined"
else
    fail "the Grafana dashboard: $n"
fi
check "the README is /usr/share/doc/mcrelay/README.md (uncompressed: the unit links it)" [ -s /usr/share/doc/mcrelay/README.md ]

# The unit: installed, enabled (deb-systemd-helper), verified.
check "unit at /lib/systemd/system/mcrelay.service runs /usr/bin/mcrelay" \
    bash -c 'grep -q "^ExecStart=/usr/bin/mcrelay daemon" /lib/systemd/system/mcrelay.service && ! grep -q /usr/local /lib/systemd/system/mcrelay.service'
check "the unit is enabled (multi-user.target.wants)" [ -L /etc/systemd/system/multi-user.target.wants/mcrelay.service ]
if command -v systemd-analyze >/dev/null; then
    if out=$(timeout 60 systemd-analyze verify /lib/systemd/system/mcrelay.service 2>&1); then
        pass "systemd-analyze verify mcrelay.service${out:+ ($out)}"
    else
        fail "systemd-analyze verify mcrelay.service: $out"
    fi
else
    skip "systemd-analyze not installed (package systemd): unit not verified"
fi
if command -v systemd-sysusers >/dev/null; then
    check "user and group mcrelay exist (systemd-sysusers at install)" bash -c 'getent passwd mcrelay >/dev/null && getent group mcrelay >/dev/null'
else
    skip "systemd-sysusers not installed: user mcrelay not created at install"
fi

# promtool on the installed rules (Debian's prometheus package, installed on demand).
if ! command -v promtool >/dev/null; then
    echo "== installing promtool (scripts/install-deps.sh promtool)"
    timeout 900 bash "$here/install-deps.sh" promtool > "$tmp/promtool.log" 2>&1 || { tail -20 "$tmp/promtool.log" >&2; tooling "cannot install promtool"; }
fi
command -v promtool >/dev/null || tooling "promtool still missing"
if out=$(timeout 60 promtool check rules /usr/share/mcrelay/prometheus/mcrelay-alerts.yml 2>&1); then
    pass "promtool check rules: $(grep -o 'SUCCESS.*' <<<"$out")"
else
    fail "promtool check rules: $out"
fi

# The alerts fire (and stay quiet) as packaging/prometheus/mcrelay-alerts.test.yml says, on the installed file.
mkdir -p "$tmp/rules" && cp /usr/share/mcrelay/prometheus/mcrelay-alerts.yml packaging/prometheus/mcrelay-alerts.test.yml "$tmp/rules/" \
    || tooling "cannot copy the rules"
if out=$(cd "$tmp/rules" && timeout 60 promtool test rules mcrelay-alerts.test.yml 2>&1); then
    pass "promtool test rules: $(grep -c 'eval_time' packaging/prometheus/mcrelay-alerts.test.yml) alert evaluations as expected"
else
    fail "promtool test rules: $out"
fi

# --- 3. the installed daemon in a lab: every metric the dashboard and rules use is scraped ---
echo "== metrics: installed daemon in lab $prefix, --metrics 127.0.0.1:$port"
lab_up=1
labvars=$(timeout 60 "$here/netns-lab.sh" up "$prefix") || tooling "netns-lab.sh up $prefix failed"
eval "$labvars"
cat > "$tmp/config.json" <<'EOF'
{"rules": [{"name": "cam1", "in": "rin0:239.1.1.1:5001", "out": ["rout0:239.10.1.1:6001", "rout1:239.10.2.1:6001:8:listeners"]}],
 "queriers": [{"interface": "rout1", "families": ["ipv4"]}]}
EOF
ip netns exec "$LAB_RLY" /usr/bin/mcrelay daemon --config "$tmp/config.json" --control "$tmp/control.sock" \
    --workers 1 --metrics "127.0.0.1:$port" > "$tmp/daemon.out" 2> "$tmp/daemon.log" &
daemon_pid=$!
scrape() {
    ip netns exec "$LAB_RLY" timeout 10 python3 -c '
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode(), end="")' "$port"
}
up=0
for _ in $(seq 100); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    if scrape > "$tmp/scrape.txt" 2>/dev/null && grep -q '^mcrelay_rule_received_packets_total{' "$tmp/scrape.txt"; then up=1; break; fi
    sleep 0.2
done
[ $up = 1 ] || { cat "$tmp/daemon.log" >&2; tooling "the installed daemon did not serve /metrics with the rule within 20 s"; }
# A few datagrams so the counters move (to the lab's sender namespace only).
ip netns exec "$LAB_SND" timeout 20 python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 4)
for i in range(50): s.sendto(b"x" * 100, ("239.1.1.1", 5001))' || true
sleep 1.5   # one refresh later, the endpoint's own 200 is counted too
scrape > "$tmp/scrape.txt" || tooling "scrape failed"
check "the scrape has mcrelay_build_info{version=\"$version\"}" grep -q "^mcrelay_build_info{version=\"$version\"} 1" "$tmp/scrape.txt"
if python3 "$here/check-metric-names.py" "$tmp/scrape.txt" /usr/share/mcrelay/grafana/mcrelay-dashboard.json \
        /usr/share/mcrelay/prometheus/mcrelay-alerts.yml > "$tmp/names.txt" 2>&1; then
    sed 's/^/     /' "$tmp/names.txt"
    pass "every metric name and label of the dashboard and the alerting rules is in the daemon's scrape"
else
    rc=$?
    cat "$tmp/names.txt"
    [ $rc -eq 2 ] && tooling "check-metric-names.py could not run"
    fail "the dashboard or the rules use names the daemon does not expose"
fi
# The check itself must catch a wrong name and a wrong label, or it proves nothing.
printf '%s\n' 'groups:' '  - name: bad' '    rules:' '      - alert: Bad' \
    '        expr: sum by (nosuchlabel) (rate(mcrelay_no_such_metric_total[5m])) > 0' > "$tmp/bad-rules.yml"
python3 "$here/check-metric-names.py" "$tmp/scrape.txt" "$tmp/bad-rules.yml" > "$tmp/bad.txt" 2>&1; bad_rc=$?
check "the name check rejects a made-up metric and label (exit $bad_rc: $(grep -o 'not in the scrape: [^;]*' "$tmp/bad.txt" | head -1))" \
    bash -c '[ "$1" -eq 1 ] && grep -q mcrelay_no_such_metric_total "$2" && grep -q nosuchlabel "$2"' _ "$bad_rc" "$tmp/bad.txt"
kill -TERM "$daemon_pid"
for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
wait "$daemon_pid" 2>/dev/null; daemon_rc=$?
daemon_pid=
check "the installed daemon exits 0 on SIGTERM" [ $daemon_rc -eq 0 ]
# The shipped XDP object: the verifier of this kernel accepts it, and the installed daemon
# attaches it from its default path (/usr/lib/mcrelay) and leaves nothing attached after SIGTERM.
# Generic mode: the lab's receiver ends have GRO off (the veth default), so in native mode the
# daemon rightly keeps the rule on the packet path (rout0 cannot take redirects) and attaches nothing.
ip netns exec "$LAB_RLY" env -u MCRELAY_XDP_OBJECT /usr/bin/mcrelay doctor --config "$tmp/config.json" --data-path xdp > "$tmp/doctor-xdp.txt" 2>&1
grep -q "xdp object: /usr/lib/mcrelay/mcrelay_xdp.o loads" "$tmp/doctor-xdp.txt" || cat "$tmp/doctor-xdp.txt" >&2
check "mcrelay doctor --data-path xdp loads /usr/lib/mcrelay/mcrelay_xdp.o" \
    grep -q "xdp object: /usr/lib/mcrelay/mcrelay_xdp.o loads" "$tmp/doctor-xdp.txt"
printf '%s\n' '{"rules": [{"in": "rin0:239.1.1.2:5001", "out": ["rout0:239.10.1.2:6001"]}]}' > "$tmp/xdp.json"
ip netns exec "$LAB_RLY" env -u MCRELAY_XDP_OBJECT /usr/bin/mcrelay daemon --config "$tmp/xdp.json" --control "$tmp/control-xdp.sock" \
    --workers 1 --data-path xdp --xdp-mode generic > "$tmp/daemon-xdp.out" 2> "$tmp/daemon-xdp.log" &
daemon_pid=$!
attached=0
for _ in $(seq 50); do
    ip -n "$LAB_RLY" -d link show rin0 | grep -q prog/xdp && { attached=1; break; }
    sleep 0.2
done
[ $attached = 1 ] || cat "$tmp/daemon-xdp.log" >&2
check "the installed daemon with --data-path xdp attaches the shipped object to rin0" [ $attached = 1 ]
kill -TERM "$daemon_pid"
for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
wait "$daemon_pid" 2>/dev/null; daemon_rc=$?
daemon_pid=
check "... exits 0 on SIGTERM and leaves no XDP program on rin0" \
    bash -c '[ "$1" -eq 0 ] && ! ip -n "$2" -d link show rin0 | grep -q prog/xdp' _ "$daemon_rc" "$LAB_RLY"
"$here/netns-lab.sh" down "$prefix" >/dev/null 2>&1; lab_up=0

# --- 4. purge ----------------------------------------------------------------------------
echo "== purge (dpkg --purge)"
if dpkg_wait --purge mcrelay > "$tmp/purge.log" 2>&1; then
    pass "dpkg --purge removes it"
else
    cat "$tmp/purge.log" >&2
    fail "dpkg --purge mcrelay"
fi
left=()
while read -r path; do
    # Directories the package shares with others (/usr, /usr/share/man/man8, /lib, a usrmerge
    # symlink, ...) stay, as they should: a directory left must belong to another package or hold
    # other files. Every file and link of the package must be gone.
    if [ -e "$path" ] || [ -L "$path" ]; then
        if [ -d "$path" ]; then
            dpkg -S "$path" >/dev/null 2>&1 && continue
            [ -n "$(ls -A "$path")" ] && continue
        fi
        left+=("$path")
    fi
done < "$tmp/files"
check "every one of the $(wc -l < "$tmp/files") paths it installed is gone (left: ${left[*]:-none})" [ ${#left[@]} -eq 0 ]
check "/etc/mcrelay (the conffile's directory) is gone" [ ! -e /etc/mcrelay ]
check "the enablement symlink is gone" [ ! -e /etc/systemd/system/multi-user.target.wants/mcrelay.service ]
check "dpkg no longer knows the package" bash -c '[ "$(dpkg-query -W -f="\${db:Status-Status}" mcrelay 2>/dev/null || echo not-installed)" = not-installed ]'

[ $failed -eq 0 ]

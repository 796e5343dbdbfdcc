#!/usr/bin/env bash
# Installs the Debian packages mcrelay needs to build and test. Idempotent and fast when
# everything is present (checks dpkg first; runs apt-get update only when installing).
#
#   scripts/install-deps.sh            install what is missing (root), or list it (non-root)
#   scripts/install-deps.sh deb        the same plus the Debian packaging tools (make deb, make test-deb)
#   scripts/install-deps.sh promtool   only Prometheus's promtool (package prometheus, ~100 MB; the
#                                      deb test asks for it to check the alerting rules)
#   INSTALL_OPTIONAL=0 scripts/...     skip optional packages (python3-scapy, frr)
#
# frr (FRRouting 8.4.4, a peer for the querier-election live tests) is installed without being
# started or enabled: the tests start zebra and pimd themselves inside a namespace, and a frr
# service in the root namespace would be a router on the CI machine's own network. Without frr
# those tests skip and say why.
set -euo pipefail

# libbpf-dev: headers for bpf/mcrelay_xdp.c (compiled with the Swift toolchain's clang, which has
# the BPF target, so Debian's clang is not needed) and libbpf for the XDP differential test.
# nftables: the bench row kernel-nft (the kernel's forwarding where it has no multicast routing);
# its service is installed disabled and never started.
REQUIRED=(liburing-dev libpcap-dev pkg-config iproute2 ethtool tcpdump socat netsniff-ng smcroute nftables python3 jq libbpf-dev)
OPTIONAL=(python3-scapy frr)
# make deb: debhelper (pulls dpkg-dev), lintian, binutils (readelf), man-db (the deb test reads
# the installed pages), python3 (scripts/gen-manpages.py).
DEB_TOOLS=(debhelper dpkg-dev lintian binutils man-db)
case "${1:-}" in
    "") ;;
    deb) REQUIRED+=("${DEB_TOOLS[@]}") ;;
    promtool) REQUIRED=(prometheus); OPTIONAL=() ;;
    *) echo "usage: $0 [deb|promtool]" >&2; exit 2 ;;
esac

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for p in "${REQUIRED[@]}"; do is_installed "$p" || missing+=("$p"); done
missing_opt=()
if [ "${INSTALL_OPTIONAL:-1}" = "1" ]; then
    for p in "${OPTIONAL[@]}"; do is_installed "$p" || missing_opt+=("$p"); done
fi

if [ ${#missing[@]} -eq 0 ] && [ ${#missing_opt[@]} -eq 0 ]; then
    echo "install-deps: all packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if [ ${#missing[@]} -gt 0 ]; then
        echo "install-deps: missing required packages; run as root or:" >&2
        echo "  sudo apt-get install -y --no-install-recommends ${missing[*]} ${missing_opt[*]}" >&2
        exit 1
    fi
    echo "install-deps: optional packages missing (not required): ${missing_opt[*]}"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y --no-install-recommends "$@"
}
# Update the package lists only if they are absent or the install fails with stale lists.
lists_present() { compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; }
if ! lists_present; then
    echo "install-deps: apt-get update"
    apt-get update
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    if ! apt_install "${missing[@]}"; then
        echo "install-deps: install failed; refreshing package lists and retrying"
        apt-get update
        apt_install "${missing[@]}"
    fi
fi
if [ ${#missing_opt[@]} -gt 0 ]; then
    echo "install-deps: installing optional ${missing_opt[*]}"
    # No service may start while installing (frr's postinst would start it): a policy-rc.d that
    # refuses, unless the machine already has one (containers do).
    temporary_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        temporary_policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\n# install-deps.sh: no service starts while it installs packages\nexit 101\n' > "$temporary_policy"
        chmod 755 "$temporary_policy"
    fi
    apt_install "${missing_opt[@]}" || echo "install-deps: optional packages not installed (continuing)"
    [ -n "$temporary_policy" ] && rm -f "$temporary_policy"
fi
# The package enables frr.service; the tests never use it, so it stays off, also after a reboot.
if is_installed frr && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    if systemctl is-enabled --quiet frr.service 2>/dev/null || systemctl is-active --quiet frr.service 2>/dev/null; then
        echo "install-deps: disabling and stopping frr.service (the tests run FRRouting in namespaces only)"
        systemctl disable --now frr.service || true
    fi
fi

for p in "${REQUIRED[@]}"; do
    is_installed "$p" || { echo "install-deps: $p still missing" >&2; exit 1; }
done
echo "install-deps: done"

#!/usr/bin/env bash
# Builds the Debian package (`make deb`): out/deb/mcrelay_VERSION_ARCH.deb.
#
#   scripts/build-deb.sh [--out DIR] [--no-lintian]
#
# Environment: SWIFT (default swift), BUILD (the normal build folder, default .build),
# DEB_SCRATCH (where the static release build lives, default $BUILD-static).
#
# 1. The version in Sources/RelayControl/Version.swift must equal debian/changelog's.
# 2. The binary: a release build with the Swift runtime and Foundation linked statically
#    (`--static-swift-stdlib`), so the package installs on a Debian 12 machine without Swift.
#    Reused when $BUILD/release/mcrelay already is such a binary and newer than every source
#    file; otherwise built (incrementally) in $DEB_SCRATCH. It is a folder of its own because
#    --static-swift-stdlib changes every compile command: sharing $BUILD with the ordinary
#    release build (make bench, the release tests) would rebuild everything each time the
#    other is built (~4 minutes here).
# 3. Refuses a binary that needs any library of the Swift toolchain (readelf NEEDED and ldd).
#    The XDP program: $MCRELAY_XDP_OBJECT (the Makefile exports it; `make deb` runs `make bpf`
#    first), else $BUILD/bpf/mcrelay_xdp.o; shipped as /usr/lib/mcrelay/mcrelay_xdp.o.
# 4. debian/rules binary (debhelper: unit, sysusers, tmpfiles, conffile, man pages from the
#    binary's command tree, completions, shlibs Depends), then lintian (errors fail the build).
# Exit 0 with the .deb path as the last line; 1 on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

out=out/deb
run_lintian=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --no-lintian) run_lintian=0; shift ;;
        *) echo "usage: $0 [--out DIR] [--no-lintian]" >&2; exit 2 ;;
    esac
done

export PATH="$PATH:/opt/swift/usr/bin"
SWIFT=${SWIFT:-swift}
BUILD=${BUILD:-.build}
DEB_SCRATCH=${DEB_SCRATCH:-${BUILD%/}-static}
started=$(date +%s)

fail() { echo "build-deb: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg-parsechangelog dh readelf python3; do
    command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh deb installs the packaging tools)"
done

# 1. One version.
code_version=$(sed -n 's/^ *public static let current = "\(.*\)"$/\1/p' Sources/RelayControl/Version.swift)
deb_version=$(dpkg-parsechangelog -SVersion)
[ -n "$code_version" ] || fail "no version in Sources/RelayControl/Version.swift"
[ "$code_version" = "${deb_version%%-*}" ] || \
    fail "Sources/RelayControl/Version.swift says $code_version, debian/changelog says $deb_version: bump both"

# 2. The binary.
swift_libs() {  # prints the toolchain libraries a binary needs (empty: none)
    readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -E '^lib(swift|Foundation|dispatch|BlocksRuntime|_Foundation|_Testing|XCTest)' || true
}
is_fresh_static() {
    local bin=$1
    [ -x "$bin" ] || return 1
    [ -z "$(swift_libs "$bin")" ] || return 1
    [ -z "$(find Sources Package.swift -newer "$bin" -print -quit)" ]
}
bin=
if is_fresh_static "$BUILD/release/mcrelay"; then
    bin=$BUILD/release/mcrelay
    echo "build-deb: reusing $bin (static Swift runtime, newer than the sources)"
else
    # -z now: full RELRO (lintian's hardening-no-bindnow); -z relro is the linker's default.
    flags=(-c release --product mcrelay --static-swift-stdlib --scratch-path "$DEB_SCRATCH" -Xlinker -z -Xlinker now)
    echo "build-deb: $SWIFT build ${flags[*]}"
    "$SWIFT" build "${flags[@]}"
    bin=$DEB_SCRATCH/release/mcrelay
fi
[ -x "$bin" ] || fail "no binary at $bin"

# 3. Nothing from the toolchain.
needed=$(swift_libs "$bin")
[ -z "$needed" ] || fail "$bin needs toolchain libraries: $needed"
if ldd "$bin" | grep -q /opt/swift; then
    fail "$bin loads a library from /opt/swift: $(ldd "$bin" | grep /opt/swift)"
fi
"$bin" --version >/dev/null || fail "$bin --version failed"
xdp_object=${MCRELAY_XDP_OBJECT:-$BUILD/bpf/mcrelay_xdp.o}
[ -s "$xdp_object" ] || fail "no XDP object at $xdp_object (make bpf builds it)"
[ "$("$bin" --version)" = "mcrelay $code_version" ] || fail "$bin --version says '$("$bin" --version)', expected 'mcrelay $code_version'"

# 4. The package.
mkdir -p "$out"
arch=$(dpkg --print-architecture)
deb="$out/mcrelay_${deb_version}_${arch}.deb"
rm -f "$deb"
debian/rules clean >/dev/null
debian/rules binary MCRELAY_BIN="$bin" MCRELAY_XDP_OBJECT="$xdp_object" DEB_OUT="$out"
debian/rules clean >/dev/null
[ -s "$deb" ] || fail "debian/rules did not write $deb"

if [ "$run_lintian" = 1 ]; then
    command -v lintian >/dev/null || fail "lintian not found (scripts/install-deps.sh deb)"
    echo "build-deb: lintian $deb"
    # --fail-on error: warnings are reported (and explained in packaging/README.md), errors fail.
    lintian --fail-on error --display-info "$deb" || fail "lintian reports errors for $deb"
fi
echo "build-deb: $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version): Depends: $(dpkg-deb -f "$deb" Depends)"
echo "build-deb: built in $(( $(date +%s) - started )) s, $(( $(stat -c %s "$deb") / 1024 )) KiB:"
echo "$deb"

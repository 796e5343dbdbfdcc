# mcrelay developer entry points. `make test` is what CI runs (.ci/run).
#
#   make deps      install Debian packages (scripts/install-deps.sh; root installs, others list)
#   make bpf       the XDP program bpf/mcrelay_xdp.c -> $(BUILD)/bpf/mcrelay_xdp.o (clang -target bpf)
#   make afxdp-experiment  the AF_XDP relay experiment (issue #14, bench row afxdp-c) -> $(BUILD)/afxdp/
#   make tpacket-experiment  the AF_PACKET ring relay experiment (issue #14, rows packet-c, tpacket-c, tpacket-rx-c) -> $(BUILD)/tpacket/
#   make build     debug build (and make bpf)
#   make release   release build
#   make test      deps, build with tests, then the pure suites (parallel) and the live suites (serial),
#                  then test-deb
#   make test-repeat N=3   the live suites N times; reports every test that failed in any run
#   make deb       Debian package out/deb/mcrelay_VERSION_ARCH.deb (scripts/build-deb.sh: static
#                  release build in $(BUILD)-static, debhelper, lintian); see packaging/README.md
#   make test-deb  builds the package, installs it, checks it (man pages, completions, unit,
#                  config, dashboard/alert metric names against a live daemon), purges it (root)
#   make demo      deps, build, then scripts/demo.sh (three-namespace demo)
#   make bench     core micro-benchmarks, simulator throughput, end to end vs socat and the kernel
#   make bench-smoke  checks the end-to-end benchmark harness itself (CI)
#   make bench-churn  listener churn on 16 links while static streams forward (root; CHURN_FLAGS=--smoke)
#   make soak-live live soak of the release daemon in namespaces, MINUTES (default 10) (root; not in `make test`)
#   make fuzz      fuzz every target FUZZ_SECONDS (default 60) each (scripts/fuzz.sh; --smoke for CI)
#   make clean     remove build products
#
# Variables: SCRATCH=/path  use another build folder (--scratch-path), e.g. to keep parallel
#            builds apart; SWIFT=/path/to/swift; TEST_FILTER=regex passes --filter to swift test.

SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin
export SWIFT_BACKTRACE := enable=no

SWIFT ?= swift
SCRATCH ?=
SCRATCH_FLAGS := $(if $(SCRATCH),--scratch-path $(SCRATCH))
TEST_FILTER ?=
FILTER_FLAGS := $(if $(TEST_FILTER),--filter '$(TEST_FILTER)')

BUILD := $(or $(SCRATCH),.build)

.PHONY: all deps bpf afxdp-experiment tpacket-experiment build release test test-repeat test-deb deb demo bench bench-smoke bench-churn soak-live fuzz clean

all: build

deps:
	bash scripts/install-deps.sh

# The XDP program (bpf/mcrelay_xdp.c, docs/xdp-facts.md): SwiftPM's C targets cannot compile for
# the BPF target, so make writes the object to $(BPF_OBJECT), where the XDP differential test
# (and later the daemon's --data-path xdp) loads it from (MCRELAY_XDP_OBJECT). The Swift
# toolchain's clang has the BPF backend; headers come from libbpf-dev and linux-libc-dev.
BPF_CLANG ?= $(firstword $(wildcard /opt/swift/usr/bin/clang) clang)
BPF_OBJECT := $(BUILD)/bpf/mcrelay_xdp.o
export MCRELAY_XDP_OBJECT := $(abspath $(BPF_OBJECT))

bpf: $(BPF_OBJECT)

$(BPF_OBJECT): bpf/mcrelay_xdp.c
	@test -f /usr/include/bpf/bpf_helpers.h || { echo "make bpf: /usr/include/bpf/bpf_helpers.h missing: install libbpf-dev (make deps)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(BPF_CLANG) -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu -c $< -o $@

# The AF_XDP relay experiment of issue #14 (bench/experiments/afxdp, the bench row afxdp-c): not
# part of mcrelay, built only when asked for.
afxdp-experiment:
	bench/experiments/afxdp/build.sh $(abspath $(BUILD))/afxdp

# The AF_PACKET relay experiment of issue #14 (bench/experiments/tpacket, the rows packet-c:
# recvmmsg/sendmmsg, tpacket-c: TPACKET_V3 receive and TPACKET_V2 transmit rings, tpacket-rx-c: the
# receive ring with sendmmsg): the same.
tpacket-experiment:
	bench/experiments/tpacket/build.sh $(abspath $(BUILD))/tpacket

build: bpf
	$(SWIFT) build $(SCRATCH_FLAGS)

release:
	$(SWIFT) build -c release $(SCRATCH_FLAGS)

# The live suites (network namespaces, daemons, real traffic; Swift Testing type names in
# LinuxIOTests). scripts/run-tests.sh runs every other suite first, in parallel, then these with
# --no-parallel, so no two live tests ever overlap and nothing else runs beside them (README,
# "Tests"). A live test whose suite is missing here fails in the pure pass (Harness/LiveLease.swift).
export LIVE_SUITES := RelayEndToEndTests|EndToEndIPv6Tests|EndToEndQuerierTests|QuerierElectionTests|BridgeSnoopingTests|EndToEndProxyTests|EndToEndFollowTests|ListenerTapTests|EndToEndLinkRecoveryTests|MetricsEndToEndTests|MetricsIPv6Tests|DoctorTests|OperatorTests/EndToEnd|DataPlane(Forwarding|WorkerSet|Ingress|PacketEgress|Egress)Tests|XDPVethTests|EndToEndXDPTests
RUN_TESTS := bash scripts/run-tests.sh --swift $(SWIFT) $(if $(SCRATCH),--scratch $(SCRATCH))

# Pure pass (parallel), live pass (serial), release pass (the heap-allocation test, optimized, from
# Tests/ReleaseChecks), a table of suite durations, then swift test's summary line of each pass.
# Fails if any pass failed.
test: deps bpf
	@# The bench report's judgement of #14's goals (bench/tests: no root, no lab, a second).
	$(if $(TEST_FILTER),,python3 -m unittest discover -s bench/tests)
	$(SWIFT) build --build-tests $(SCRATCH_FLAGS)
	$(RUN_TESTS) $(if $(TEST_FILTER),--filter '$(TEST_FILTER)')
	@# Last: the Debian package, built, installed, checked and purged (not with TEST_FILTER).
	$(if $(TEST_FILTER),,$(MAKE) --no-print-directory test-deb)

# The Debian package (packaging/README.md). The binary links the Swift runtime statically
# (--static-swift-stdlib), built in its own folder $(BUILD)-static: the flag changes every compile
# command, so sharing $(BUILD) with the ordinary release build would rebuild all of it each time.
# A static binary already in $(BUILD)/release that is newer than the sources is reused.
deb: bpf
	bash scripts/install-deps.sh deb
	SWIFT=$(SWIFT) BUILD=$(BUILD) bash scripts/build-deb.sh

# Builds the package, installs it with dpkg -i, checks it, runs the installed daemon with
# --metrics in a namespace lab, purges it (root; skipped with a reason otherwise).
test-deb: bpf
	bash scripts/install-deps.sh deb
	SWIFT=$(SWIFT) BUILD=$(BUILD) bash scripts/deb-test.sh

# The live suites N times (default 3); lists every test that failed in any run.
N ?= 3
test-repeat: deps
	$(SWIFT) build --build-tests $(SCRATCH_FLAGS)
	$(RUN_TESTS) --live-only --repeat $(N) $(if $(TEST_FILTER),--filter '$(TEST_FILTER)')

demo: deps build
	bash scripts/demo.sh

# Core micro-benchmarks, simulator throughput, then end to end in namespaces against socat and
# the kernel's own forwarding (root). Each part writes its figures under bench/results/; the last
# step prints them as one table beside their targets and updates BENCHMARKS.md.
BENCH_RESULTS := bench/results
# Every relay row (mcrelay-napi: the defaults with snd0 tso off, so that rin0 receives through its NAPI as a NIC does;
# mcrelay-softirq: --input-napi kernel, the receive work left in softirq; mcrelay-udp: --egress udp; mcrelay-udp-on: GSO onto the veth; mcrelay-udp-nic: rout0
# emulating a NIC without USO; mcrelay-xdp / -generic: --data-path xdp, native or generic, see
# bench/README.md; afxdp-c: the AF_XDP experiment, packet-c, tpacket-c, tpacket-rx-c: the AF_PACKET
# experiment without and with the kernel's packet rings, IPv4 only) and a profile of each, one input
# fanned out to 8 output links, and the delivered-versus-offered curves, in the one-link and the
# fan-out lab (well over an hour in all).
BENCH_E2E_FLAGS ?= --relays socat,kernel,kernel-nft,mcrelay,mcrelay-napi,mcrelay-softirq,mcrelay-udp,mcrelay-udp-on,mcrelay-udp-nic,mcrelay-xdp,mcrelay-xdp-generic,afxdp-c,packet-c,tpacket-c,tpacket-rx-c --family ipv4,ipv6 --perf \
	--fanout 8 --fanout-relays kernel,kernel-nft,mcrelay-softirq,mcrelay,mcrelay-napi,mcrelay-xdp,afxdp-c,packet-c,tpacket-c,tpacket-rx-c \
	--curve --curve-relays kernel,kernel-nft,mcrelay-softirq,mcrelay,mcrelay-napi,mcrelay-xdp,mcrelay-xdp-generic,afxdp-c,packet-c,tpacket-c,tpacket-rx-c --curve-fanout
bench: deps bpf afxdp-experiment tpacket-experiment
	rm -f $(BENCH_RESULTS)/core/Current_run.jmh.json $(BENCH_RESULTS)/sim-latest.json
	cd Benchmarks && $(SWIFT) package --allow-writing-to-package-directory benchmark --target RelayCoreBenchmarks \
		--format jmh --path ../$(BENCH_RESULTS)/core --no-progress
	$(SWIFT) build -c release $(SCRATCH_FLAGS) --product mcrelay
	$(or $(SCRATCH),.build)/release/mcrelay sim bench --json $(BENCH_RESULTS)/sim-latest.json
	scripts/bench-e2e.sh --mcrelay $(or $(SCRATCH),.build)/release/mcrelay --afxdp-relay $(abspath $(BUILD))/afxdp/afxdp_relay \
		--tpacket-relay $(abspath $(BUILD))/tpacket/tpacket_relay $(BENCH_E2E_FLAGS)
	python3 bench/summary.py --write BENCHMARKS.md

# Proves the end-to-end harness works (generator -> relay -> counter for each relay); never judges speed.
bench-smoke: deps build afxdp-experiment tpacket-experiment
	scripts/bench-e2e.sh --smoke --family ipv4,ipv6 --relays socat,kernel,kernel-nft,mcrelay,mcrelay-napi,mcrelay-xdp,mcrelay-xdp-generic,afxdp-c,packet-c,tpacket-c,tpacket-rx-c \
		--afxdp-relay $(abspath $(BUILD))/afxdp/afxdp_relay --tpacket-relay $(abspath $(BUILD))/tpacket/tpacket_relay --mcrelay $(or $(SCRATCH),.build)/debug/mcrelay
	@# The summary table must still read the committed results of the last full run.
	python3 bench/summary.py > /dev/null

# Listener churn (issue #13): hosts on many links join and leave follow-output groups while
# static streams forward; fails on any static loss (bench/README.md "Listener churn").
bench-churn: deps release
	scripts/bench-churn.sh --mcrelay $(or $(SCRATCH),.build)/release/mcrelay $(CHURN_FLAGS)

# The release daemon (2 workers) under steady traffic, rule churn, SIGHUP reloads, flaps and worker
# kills for MINUTES; samples RSS, fds, memberships and stats every ~10 s and judges them
# (scripts/live-soak.sh; results in soak/results/live-*/).
MINUTES ?= 10
soak-live: deps
	$(SWIFT) build -c release $(SCRATCH_FLAGS) --product mcrelay
	scripts/live-soak.sh --minutes $(MINUTES) --mcrelay $(or $(SCRATCH),.build)/release/mcrelay

# libFuzzer + AddressSanitizer on every target in Fuzz/Targets, FUZZ_SECONDS each (scripts/fuzz.sh;
# builds in .build-fuzz, never in the normal build folder). Crash inputs: .build-fuzz/artifacts/.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

clean:
	$(SWIFT) package clean $(SCRATCH_FLAGS)
	rm -rf $(BUILD) $(BUILD)-static out/deb debian/generated

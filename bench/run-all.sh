#!/usr/bin/env bash
# Every figure of BENCHMARKS.md's suite (section 3b) in one command, with its references in the
# same run:
#
#   bench/run-all.sh [OUT_DIR]          # default OUT_DIR: bench-results/<UTC date and time>
#
# 1. peerchannel-bench `all`: link, chain, mesh10 × 64 B / 1 KiB / 64 KiB × none / TLS / signed ×
#    throughput / latency, with the plain TCP references (about 10 minutes).
# 2. NATS: installs Debian's nats-server if it is missing, starts it on 127.0.0.1:14222, runs
#    nats-bench at every size in throughput and latency mode, stops it.
# 3. rust-libp2p gossipsub in the same 10-node scenario: none/Noise and signed, at the two
#    publishing paces of BENCHMARKS.md, and latency at 2,000 msg/s.
# 4. The core's forwarding bench (criterion) and the simulator's 1k/10k-node scenarios, which
#    BENCHMARKS.md sections 1 and 2 quote for how cost grows with mesh size.
#
# Each step's JSON lines (or text) go to OUT_DIR; the tables go to the terminal. Run it on an
# otherwise idle machine: no build, test or fuzzer at the same time (figures of a busy machine
# say nothing). The builds come first, so they are not measured. Options of the benchmark
# programs can be passed through the environment: BENCH_ARGS (peerchannel-bench, e.g.
# "--duration 2"), PEERS_ARGS (nats-bench and gossipsub-bench, e.g. "--duration 2"), and
# SKIP="core sim" to leave steps out (names: suite nats gossipsub core sim).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/bench-results/$(date -u +%Y%m%d-%H%M%S)}
PEERS_TARGET=${PEERS_TARGET:-$ROOT/target/peers}
BENCH_ARGS=${BENCH_ARGS:-}
PEERS_ARGS=${PEERS_ARGS:-}
SKIP=${SKIP:-}
mkdir -p "$OUT"
cd "$ROOT"

wanted() { [[ " $SKIP " != *" $1 "* ]]; }
step() { echo; echo "== $* ($(date -u +%H:%M:%S) UTC)"; }

step "building (not measured)"
cargo build --release -p peerchannel-bench -p peerchannel-sim
if wanted nats || wanted gossipsub; then
    (cd bench/peers && CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release --bins)
fi
if wanted core; then
    cargo bench -p peerchannel-core --bench forwarding --no-run
fi
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') × $(nproc)"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

if wanted suite; then
    step "peerchannel-bench all"
    # shellcheck disable=SC2086
    target/release/peerchannel-bench all --json $BENCH_ARGS > "$OUT/peerchannel.jsonl"
fi

if wanted nats; then
    step "NATS"
    bench/peers/install-nats.sh
    trap 'bench/peers/install-nats.sh --stop' EXIT
    for mode in throughput latency; do
        # shellcheck disable=SC2086
        "$PEERS_TARGET/release/nats-bench" --size all --mode "$mode" --json $PEERS_ARGS >> "$OUT/nats.jsonl"
    done
    bench/peers/install-nats.sh --stop
    trap - EXIT
fi

if wanted gossipsub; then
    step "rust-libp2p gossipsub"
    for pace in 16 128; do
        # shellcheck disable=SC2086
        "$PEERS_TARGET/release/gossipsub-bench" --size 1024 --security all --yield-every "$pace" --json $PEERS_ARGS \
            >> "$OUT/gossipsub.jsonl"
    done
    # shellcheck disable=SC2086
    "$PEERS_TARGET/release/gossipsub-bench" --size 1024 --security all --mode latency --rate 2000 --json $PEERS_ARGS \
        >> "$OUT/gossipsub.jsonl"
fi

if wanted core; then
    step "core forwarding (criterion)"
    cargo bench -p peerchannel-core --bench forwarding 2>&1 | tee "$OUT/forwarding.txt"
fi

if wanted sim; then
    step "simulator"
    for scenario in steady-1k churn-1k mass-failure-10k; do
        target/release/peerchannel-sim --scenario "$scenario" | tee "$OUT/sim-$scenario.txt"
    done
fi

step "done: results in $OUT"

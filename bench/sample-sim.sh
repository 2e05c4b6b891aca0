#!/usr/bin/env bash
# The simulator's speed over a stretch of time, for BENCHMARKS.md section 2: on this kind of
# shared machine one run says little (the same binary ranges about 2x within minutes), so a
# figure is a sample of runs, and a comparison is binaries run in turn in the same minutes.
#
#   bench/sample-sim.sh [MINUTES] [BINARY...]
#
# Runs each BINARY (default: target/release/peerchannel-sim, built first) in turn with
# `--scenario $SCENARIO -q $SIM_ARGS` until MINUTES (default 10) have passed, then prints for
# each binary the number of runs, the events per second under traffic (the report's "from the
# first publish" rate) and over the whole run: range, median, mean, how many runs reached
# $TARGET M events/s, and the sorted rates. Environment: SCENARIO (default steady-1k), SIM_ARGS
# (e.g. "--duration 300"), TARGET (default 1.0), PAUSE (seconds between rounds, default 0).
# Run it on an otherwise idle machine: no build, test or fuzzer at the same time.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MINUTES=${1:-10}
shift || true
SCENARIO=${SCENARIO:-steady-1k}
SIM_ARGS=${SIM_ARGS:-}
TARGET=${TARGET:-1.0}
PAUSE=${PAUSE:-0}
if [ $# -eq 0 ]; then
    (cd "$ROOT" && cargo build --release -p peerchannel-sim)
    set -- "$ROOT/target/release/peerchannel-sim"
fi

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
end=$(($(date +%s) + MINUTES * 60))
echo "sampling $SCENARIO for $MINUTES min from $(date -u +%H:%M:%S) UTC: $*" >&2
# At least one round, however short the sample.
while :; do
    for i in $(seq 1 $#); do
        bin=${!i}
        # shellcheck disable=SC2086
        out=$("$bin" --scenario "$SCENARIO" -q $SIM_ARGS 2>&1) || { echo "$bin failed:" >&2; echo "$out" >&2; exit 1; }
        # A scenario without publishes has no "from the first publish" line: nan, not an exit.
        whole=$(echo "$out" | grep -m1 "^  engine" | grep -oE "[0-9.]+ M events/s" | cut -d' ' -f1 || true)
        traffic=$(echo "$out" | grep -m1 "from the first publish" | grep -oE "[0-9.]+ M events/s" | cut -d' ' -f1 || true)
        echo "$i ${traffic:-nan} ${whole:-nan}" >> "$LOG"
    done
    [ "$(date +%s)" -lt "$end" ] || break
    sleep "$PAUSE"
done
echo "until $(date -u +%H:%M:%S) UTC" >&2

for i in $(seq 1 $#); do
    echo "${!i}"
    for col in 2 3; do
        label=$([ $col -eq 2 ] && echo "under traffic" || echo "whole run    ")
        awk -v b="$i" -v c="$col" '$1 == b && $c != "nan" { print $c }' "$LOG" | sort -n | awk -v t="$TARGET" -v l="$label" '
            { v[NR] = $1; s += $1; if ($1 >= t) hit++ }
            END {
                if (NR == 0) { print "  " l ": no runs"; exit }
                med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "  %s: %d runs, %.2f-%.2f M events/s, median %.2f, mean %.3f, %d at %s M or more\n", l, NR, v[1], v[NR], med, s / NR, hit, t
                printf "    sorted:"; for (k = 1; k <= NR; k++) printf " %.2f", v[k]; printf "\n"
            }'
    done
done

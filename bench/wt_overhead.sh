#!/usr/bin/env bash
# The WebTransport intake's figures with the bench harness, alternating so that a shared
# machine's drift spreads over every target alike:
#   round n: one run of the targets `engine` (raw QUIC, WebTransport off), `engine-wt-on`
#   (raw QUIC, WebTransport on beside it) and `webtransport` (the same load over
#   WebTransport datagrams), each a fresh flashpointd, fixed phase (100 k records/s, 16
#   records a datagram, 1,100-byte frames for every target: what a WebTransport datagram
#   carries at quinn's initial MTU, 2 s warm-up + 10 s); with SAT=1 also the saturation
#   search.
# Then the medians of the rounds and the targets: WebTransport p50 <= 1.3x and p99 <= 1.5x
# the raw intake's, records/s at saturation >= 0.8x, and the raw intake's p99 with
# WebTransport on within 5 % of off. Builds fpn-bench and flashpointd (release; the binaries
# are where cargo says, or in FPN_BIN_DIR, bench/cargo_bins.sh) and needs jq. BENCHMARKS.md,
# "WebTransport intake".
#
#   bench/wt_overhead.sh 5                 # five rounds
#   SAT=1 NICE=-20 bench/wt_overhead.sh 3
#
# Writes $OUT/round-<n>/ (each run's summary.json, table.txt) and $OUT/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/cargo_bins.sh
release_bins fpn-bench flashpointd
bench=$(need_bin fpn-bench)
engine=$(need_bin flashpointd)
rounds=${1:-5}
out=${OUT:-${CARGO_TARGET_DIR:-target}/bench-wt}
phases=fixed${SAT:+,saturation}
rm -rf "$out"; mkdir -p "$out"
for n in $(seq 1 "$rounds"); do
  # The order rotates each round, so no target always runs first (or last).
  case $((n % 3)) in
    1) order="engine engine-wt-on webtransport" ;;
    2) order="engine-wt-on webtransport engine" ;;
    0) order="webtransport engine engine-wt-on" ;;
  esac
  mkdir -p "$out/round-$n"
  for t in $order; do
    "$bench" run --targets "$t" --phases "$phases" --rate 100000 --duration 10 \
      --warmup 2 --frame-max 1100 --engine-bin "$engine" \
      --out "$out/round-$n/$t" ${NICE:+--nice $NICE} > "$out/round-$n/$t.log" 2>&1 \
      || { echo "round $n $t failed: $out/round-$n/$t.log" >&2; exit 1; }
  done
  echo "round $n done: $(cut -d' ' -f1-3 /proc/loadavg)"
done
{
  echo "$rounds rounds, $(nproc) CPUs, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
  printf '%-14s %10s %10s %10s %12s\n' target p50_us p99_us p999_us saturation
  for t in engine engine-wt-on webtransport; do
    for n in $(seq 1 "$rounds"); do
      jq -r --arg t "$t" '.targets[$t] | [.phases.fixed.latency_corrected.p50_us,
          .phases.fixed.latency_corrected.p99_us, .phases.fixed.latency_corrected["p99.9_us"],
          (.saturation.best_achieved_per_s // "-")] | @tsv' "$out/round-$n/$t/summary.json" \
        | awk -v t="$t" -v n="$n" '{ printf "%-14s %10s %10s %10s %12s  (round %s)\n", t, $1, $2, $3, $4, n }'
    done
  done
  for t in engine engine-wt-on webtransport; do
    for q in p50_us p99_us; do
      m=$(for n in $(seq 1 "$rounds"); do
            jq -r --arg t "$t" --arg q "$q" '.targets[$t].phases.fixed.latency_corrected[$q]' \
              "$out/round-$n/$t/summary.json"; done | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
      echo "median $t $q $m"
    done
  done
} | tee "$out/summary.txt"

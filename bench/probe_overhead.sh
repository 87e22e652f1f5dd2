#!/usr/bin/env bash
# The cost of `fpn probe` on the engine: one fixed-phase engine run of the bench harness
# (100 k records/s, 16 records a datagram, 2 s warm-up + 10 s), bare or with `fpn probe`
# attached to the harness's flashpointd for the whole run. Run the two modes alternately.
# With a third argument `stats`, the kernel's per-program counters
# (sysctl kernel.bpf_stats_enabled=1, set by the caller) are saved before the probe detaches.
# Needs root and bpftool; builds fpn-bench, flashpointd and fpn (release; the binaries are
# where cargo says, or in FPN_BIN_DIR, bench/cargo_bins.sh).
#
#   bench/probe_overhead.sh bare 1; bench/probe_overhead.sh probe 1      # and so on
#   PROBE_ARGS=--no-syscalls NICE=-20 bench/probe_overhead.sh probe 2 stats
#
# Writes $OUT/<mode>-<n>/ (the harness's summary.json, table.txt) and, probed,
# <mode>-<n>.probe (the last view), .probe.err, .progs.json. BENCHMARKS.md, "eBPF probes".
set -u
cd "$(dirname "$0")/.."
. bench/cargo_bins.sh
release_bins fpn-bench flashpointd fpn-cli || exit 1
bench=$(need_bin fpn-bench) && engine=$(need_bin flashpointd) && fpn=$(need_bin fpn) || exit 1
mode=$1; n=$2; stats=${3:-}
out=${OUT:-${CARGO_TARGET_DIR:-target}/bench-probe}/$mode-$n
rm -rf "$out"; mkdir -p "$(dirname "$out")"
"$bench" run --targets engine --phases fixed --rate 100000 --duration 10 --warmup 2 \
  --engine-bin "$engine" --out "$out" ${NICE:+--nice $NICE} > "$out.log" 2>&1 &
bench=$!
probe=""
if [ "$mode" = probe ]; then
  for _ in $(seq 1 200); do
    pid=$(pgrep -f -- "--data-dir $out/engine.d" | head -1)
    [ -n "$pid" ] && [ -f "$out/engine.d/quic.addr" ] && break
    sleep 0.05
  done
  "$fpn" probe --pid "$pid" --listen off --interval 60 --plain ${PROBE_ARGS:-} \
    > "$out.probe" 2> "$out.probe.err" &
  probe=$!
fi
wait $bench
if [ -n "$probe" ]; then
  [ -n "$stats" ] && bpftool prog show --json > "$out.progs.json"
  kill -INT $probe; wait $probe
fi
echo "$mode $n: $out"

#!/usr/bin/env bash
# The many-core comparison on a host without a Rust toolchain, from prebuilt release binaries
# (issue #16). Writes one summary (text and JSON) with the host's facts.
#
#   bench/host_check.sh --collect DIR        # here, with cargo: build the binaries into DIR,
#                                            # then --self-check them
#   bench/host_check.sh --self-check DIR     # the binaries in DIR need at most GLIBC_2.34
#   bench/host_check.sh DIR                  # on the host: run everything, write $OUT
#
# DIR holds fpn-bench, flashpointd and fpn, and optionally `e2e` (the e2e bench,
# engine/daemon/benches/e2e.rs). Copy DIR and this script to the host (bench/README.md,
# "A many-core host from prebuilt binaries"); it needs bash and coreutils, nothing else.
#
# On the host, with the allowed CPUs (the affinity mask: taskset narrows it) split into
# client CPUs (the first 4, or 2 on fewer than 8 CPUs, or 1) and server CPUs (the rest):
#   scaling  `fpn-bench run --clients 1,2,4`: N client threads against N bare quinn receivers
#            and the engine with N intakes, blast phase (4 connections per client)
#   conns    one client, 64 connections, against the bare echo and the engine
#   blast    one client as fast as it can against the sink and the engine: no session may be
#            closed, every record accepted or refused with a reason
#   log      one client, fixed and saturation phases, the engine with the input log's group
#            commit against durability none and the bare echo (issue #15's targets, printed
#            at the end of its table)
#   wt       one client, fixed and saturation phases, 1,100-byte frames: the engine over raw
#            QUIC (WebTransport off, and on) against it over WebTransport (issue #17's targets)
#   e2e      the e2e bench through the daemon's topology on every allowed CPU, if carried
# Environment: OUT (default ./fpn-host-check-<UTC time>), QUICK=0 for full-length phases,
# CLIENTS (default from the CPU count, e.g. 1,2,4), E2E_INTENTS (the e2e's timed intents).
set -uo pipefail

# The glibc the release binaries may need at most: Debian 12, Ubuntu 22.04, RHEL 9 have it.
GLIBC_MAX=${GLIBC_MAX:-2.34}

die() { echo "host_check: $*" >&2; exit 1; }

# "<version> <symbol>" for every glibc-versioned symbol binary $1 imports (objdump, else
# readelf).
glibc_symbols() {
  if command -v objdump >/dev/null 2>&1; then objdump -T "$1"; else readelf --dyn-syms -W "$1"; fi 2>/dev/null \
    | awk '{ if (match($0, /GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?/)) { v = substr($0, RSTART + 6, RLENGTH - 6);
             sym = $NF; for (i = 1; i <= NF; i++) if (index($i, "@GLIBC")) { sym = $i; sub(/@.*/, "", sym) }
             print v, sym } }'
}

# Whether version $1 is newer than GLIBC_MAX.
newer_than_max() { [ "$(printf '%s\n%s\n' "$GLIBC_MAX" "$1" | sort -V | tail -1)" != "$GLIBC_MAX" ]; }

# Fails if a binary in $1 needs a glibc symbol newer than GLIBC_MAX, naming those symbols.
self_check() {
  local dir=$1 bin need bad=0 v sym
  command -v objdump >/dev/null 2>&1 || command -v readelf >/dev/null 2>&1 \
    || die "neither objdump nor readelf (binutils): cannot read symbol versions"
  for bin in fpn-bench flashpointd fpn; do
    [ -x "$dir/$bin" ] || { echo "host_check: $dir/$bin missing" >&2; bad=1; }
  done
  for bin in "$dir"/*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    need=$(glibc_symbols "$bin" | cut -d' ' -f1 | sort -Vu | tail -1)
    if [ -z "$need" ]; then
      echo "$(basename "$bin"): no GLIBC symbol versions (static, or not a glibc binary)"
    elif newer_than_max "$need"; then
      echo "$(basename "$bin"): needs GLIBC_$need > GLIBC_$GLIBC_MAX, for:" >&2
      glibc_symbols "$bin" | sort -u | while read -r v sym; do
        if newer_than_max "$v"; then echo "  $sym (GLIBC_$v)" >&2; fi
      done
      bad=1
    else
      echo "$(basename "$bin"): needs at most GLIBC_$need (<= GLIBC_$GLIBC_MAX)"
    fi
  done
  return $bad
}

collect() {
  local dir=$1 root
  root=$(cd "$(dirname "$0")/.." && pwd)
  mkdir -p "$dir" || die "cannot create $dir"
  (
    cd "$root" || exit 1
    . bench/cargo_bins.sh
    release_bins fpn-bench flashpointd fpn-cli || exit 1
    for b in fpn-bench flashpointd fpn; do cp "$(need_bin "$b")" "$dir/$b" || exit 1; done
    # The e2e bench: built by `cargo bench --no-run` (the bench profile), found the same way.
    e2e=$(cargo bench -p flashpointd --bench e2e --no-run --message-format=json-render-diagnostics \
      ${CARGO_BUILD_FLAGS:-} | cargo_executables | awk '$1 == "e2e" { print $2 }' | tail -1)
    [ -n "$e2e" ] && cp "$e2e" "$dir/e2e"
  ) || die "build failed"
  echo "host_check: binaries in $dir:"; ls -l "$dir"
  self_check "$dir"
}

# A JSON string of $1.
json_str() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  s=${s//$'\n'/\\n}
  printf '"%s"' "$s"
}

# The allowed CPUs as a space-separated list, from the affinity mask.
allowed_cpus() {
  local list part a b
  list=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)
  for part in ${list//,/ }; do
    if [[ $part == *-* ]]; then a=${part%-*}; b=${part#*-}; seq "$a" "$b"; else echo "$part"; fi
  done | tr '\n' ' '
}

join_by() { local IFS=$1; shift; echo "$*"; }

run_all() {
  local dir bin_dir cpus n clients_n client server out quick host_json
  bin_dir=$(cd "$1" && pwd) || die "no directory $1"
  for b in fpn-bench flashpointd fpn; do [ -x "$bin_dir/$b" ] || die "$bin_dir/$b missing"; done
  out=${OUT:-./fpn-host-check-$(date -u +%Y%m%dT%H%M%SZ)}
  mkdir -p "$out" || die "cannot create $out"
  out=$(cd "$out" && pwd)
  read -r -a cpus <<< "$(allowed_cpus)"
  n=${#cpus[@]}
  if [ "$n" -ge 8 ]; then clients_n=4; elif [ "$n" -ge 4 ]; then clients_n=2; else clients_n=1; fi
  client=$(join_by , "${cpus[@]:0:$clients_n}")
  server=$(join_by , "${cpus[@]:$clients_n}")
  [ -n "$server" ] || server=$client
  case $clients_n in 4) list=${CLIENTS:-1,2,4} ;; 2) list=${CLIENTS:-1,2} ;; *) list=${CLIENTS:-1} ;; esac
  quick=(); [ "${QUICK:-1}" = 1 ] && quick=(--duration 3 --warmup 1)

  local model glibc kernel
  model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -1)
  kernel=$(uname -r)
  {
    echo "host_check: $(date -u +%FT%TZ)"
    echo "host: $(uname -n), kernel $kernel, $(nproc) CPUs online, allowed: $(join_by , "${cpus[@]}") ($n)"
    echo "cpu: $model"
    echo "glibc: $glibc"
    echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "binaries: $bin_dir ($("$bin_dir/flashpointd" --version 2>&1 | head -1))"
    echo "client cpus: $client; server cpus: $server; clients: $list"
    [ "$n" -lt 16 ] && echo "NOTE: $n allowed CPUs: issue #16's many-core targets need at least 16; these figures do not show them."
    echo
  } | tee "$out/summary.txt"
  host_json=$(printf '{"hostname": %s, "kernel": %s, "nproc": %s, "allowed_cpus": [%s], "cpu_model": %s, "glibc": %s, "loadavg_at_start": %s, "client_cpus": [%s], "server_cpus": [%s], "clients": [%s]}' \
    "$(json_str "$(uname -n)")" "$(json_str "$kernel")" "$(nproc)" "$(join_by , "${cpus[@]}")" \
    "$(json_str "$model")" "$(json_str "$glibc")" "$(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")" \
    "$client" "$server" "$list")

  local bench=("$bin_dir/fpn-bench" run --engine-bin "$bin_dir/flashpointd")
  local -A runs=(
    [scaling]="--clients $list --client-cpus $client --server-cpus $server --targets quic-sink,engine --phases blast --conns 4"
    [conns]="--client-cpus ${cpus[0]} --server-cpus $server --targets quic-echo,engine --phases conns --many-conns 64"
    [blast]="--client-cpus ${cpus[0]} --server-cpus $server --targets quic-sink,engine --phases blast"
    [log]="--client-cpus ${cpus[0]} --server-cpus $server --targets quic-echo,engine,engine-nolog --phases fixed,saturation"
    [wt]="--client-cpus ${cpus[0]} --server-cpus $server --targets engine,engine-wt-on,webtransport --phases fixed,saturation --frame-max 1100"
  )
  local name rc
  for name in scaling conns blast log wt; do
    echo "== $name: fpn-bench run ${runs[$name]} ${quick[*]}" | tee -a "$out/summary.txt"
    # shellcheck disable=SC2086
    "${bench[@]}" ${runs[$name]} "${quick[@]}" --out "$out/$name" > "$out/$name.log" 2>&1
    rc=$?
    if [ -f "$out/$name/table.txt" ]; then cat "$out/$name/table.txt" >> "$out/summary.txt"; fi
    [ "$rc" = 0 ] || echo "$name: fpn-bench exited $rc (log: $out/$name.log)" | tee -a "$out/summary.txt"
    echo >> "$out/summary.txt"
  done
  # The blast phase: sessions the engine closed (its fpn_quic_sessions_total by outcome over
  # the phase, and a phase that failed with "connection lost"), records it neither accepted
  # nor refused (unanswered), refusals by reason.
  if [ -f "$out/blast/summary.json" ]; then
    { grep -o '"fpn_quic_sessions_total{[^}]*}": *[0-9.e+]*' "$out/blast/summary.json"
      grep -o '"error": *"[^"]*"' "$out/blast/summary.json"
      grep -o '"unanswered": *[0-9]*' "$out/blast/summary.json"
    } | sed 's/^/blast: /' | tee -a "$out/summary.txt"
  fi

  local e2e_text=""
  if [ -x "$bin_dir/e2e" ]; then
    echo "== e2e: E2E_VERBOSE=1 e2e --bench --noplot (default map on $n CPUs)" | tee -a "$out/summary.txt"
    (cd "$out" && CRITERION_HOME="$out/criterion" E2E_VERBOSE=1 "$bin_dir/e2e" --bench --noplot) > "$out/e2e.log" 2>&1
    e2e_text=$(grep -E '^e2e|time:|thrpt:' "$out/e2e.log")
    printf '%s\n\n' "$e2e_text" >> "$out/summary.txt"
  fi

  {
    printf '{\n"host": %s,\n' "$host_json"
    for name in scaling conns blast log wt; do
      printf '"%s": ' "$name"
      if [ -f "$out/$name/summary.json" ]; then cat "$out/$name/summary.json"; else printf 'null'; fi
      printf ',\n'
    done
    printf '"e2e": %s\n}\n' "$(json_str "$e2e_text")"
  } > "$out/summary.json"
  echo "host_check: wrote $out/summary.txt and $out/summary.json"
}

case ${1:-} in
  --self-check) [ -n "${2:-}" ] || die "usage: $0 --self-check DIR"; self_check "$2" ;;
  --collect) [ -n "${2:-}" ] || die "usage: $0 --collect DIR"; collect "$2" ;;
  ""|-h|--help) sed -n '2,28p' "$0" ;;
  *) run_all "$1" ;;
esac

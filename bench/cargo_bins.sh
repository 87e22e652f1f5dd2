# Sourced by the bench scripts: builds release binaries and asks cargo where it put them
# (`CARGO_TARGET_DIR`, a `build.target-dir` in a cargo config, or `target/`), instead of
# assuming `target/release`.
#
#   . bench/cargo_bins.sh
#   release_bins fpn-bench flashpointd      # sets $bin_fpn_bench and $bin_flashpointd
#
# With FPN_BIN_DIR set nothing is built: every executable in that directory is taken as it is
# (prebuilt binaries, as bench/host_check.sh runs them). Extra cargo flags: CARGO_BUILD_FLAGS.

# The executables in cargo's JSON messages (stdin), one "<target name> <path>" line each.
cargo_executables() {
  if command -v jq >/dev/null 2>&1; then
    jq -r 'select(.reason == "compiler-artifact" and .executable != null) | "\(.target.name) \(.executable)"'
  else
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])
'
  fi
}

# release_bins PACKAGE...: builds the packages' binaries (release) and sets bin_<name>, the
# name's dashes as underscores, to each binary's path.
release_bins() {
  local args=() p name path lines
  # The harness passes every FPN_* variable on to flashpointd, which refuses the ones that are
  # not its settings: FPN_BIN_DIR stays a variable of this shell, no longer exported.
  export -n FPN_BIN_DIR 2>/dev/null || true
  if [ -n "${FPN_BIN_DIR:-}" ]; then
    for path in "$FPN_BIN_DIR"/*; do
      [ -f "$path" ] && [ -x "$path" ] || continue
      name=$(basename "$path")
      printf -v "bin_${name//-/_}" '%s' "$(cd "$(dirname "$path")" && pwd)/$name"
    done
    return 0
  fi
  for p in "$@"; do args+=(-p "$p"); done
  # shellcheck disable=SC2086
  lines=$(cargo build --release --bins --message-format=json-render-diagnostics ${CARGO_BUILD_FLAGS:-} \
    "${args[@]}" | cargo_executables; exit "${PIPESTATUS[0]}") || return 1
  while read -r name path; do
    [ -n "$name" ] && printf -v "bin_${name//-/_}" '%s' "$path"
  done <<< "$lines"
  return 0
}

# need_bin NAME: the path of binary NAME set by release_bins, or an error naming it.
need_bin() {
  local var="bin_${1//-/_}"
  if [ -z "${!var:-}" ] || [ ! -x "${!var}" ]; then
    echo "${0##*/}: no $1 binary (cargo built none${FPN_BIN_DIR:+, none in $FPN_BIN_DIR})" >&2
    return 1
  fi
  printf '%s\n' "${!var}"
}

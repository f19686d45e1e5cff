#!/usr/bin/env bash
# The replay benchmark (issue 2): a generated capture of N packets (default 1,000,000; realistic
# mix of many flows, DNS, TLS, IPv6) replayed side by side by
#   floor    a program that only reads the file with the pcap crate and counts packets,
#   netwatch replay FILE --headless -o json > /dev/null  (decode → flows → identity → records),
#   tshark   -r FILE -q -z conv,tcp -z conv,udp,
# reporting wall time (best of R runs), packets/s, peak memory, and the ratios.
# Usage: scripts/bench-replay.sh [PACKETS] [RUNS]
set -euo pipefail
# EPOCHREALTIME's decimal point.
export LC_ALL=C
cd "$(dirname "$0")/.."
source scripts/deps.sh
need_packages libpcap-dev tshark time
packets="${1:-1000000}"
runs="${2:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --quiet --release --locked --bin netwatch --example gen_capture --example pcap_count
target="${CARGO_TARGET_DIR:-target}/release"
capture="$work/bench.pcap"
"$target/examples/gen_capture" --packets "$packets" --out "$capture"
echo "capture: $packets packets, $(du -h "$capture" | cut -f1)"

# One run of a command (after a mode, `plain` or `rss`); with `rss` its peak RSS (KiB) goes to
# $work/time.
run_once() {
  local mode=$1
  shift
  if [ "$mode" = rss ]; then
    /usr/bin/time -f "%M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr"
  else
    "$@" >/dev/null 2>"$work/stderr"
  fi || { cat "$work/stderr" >&2; exit 1; }
}

# best wall seconds over $runs runs of a command, and its peak RSS (KiB). Each run is timed to
# the microsecond by bash's own clock, with no process started around it (time's %e has 10 ms
# steps, 8% of the floor's time; a timer process adds the same milliseconds to both sides of the
# ratio), so the RSS comes from one more run under time; with one run (tshark, 10 s) that run is
# timed as well.
measure() {
  local best="" started ended secs kib mode=plain
  [ "$runs" -eq 1 ] && mode=rss
  for _ in $(seq "$runs"); do
    started=$EPOCHREALTIME
    run_once "$mode" "$@"
    ended=$EPOCHREALTIME
    secs=$(awk -v a="$started" -v b="$ended" 'BEGIN{printf "%.6f", b - a}')
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; fi
  done
  [ "$mode" = rss ] || run_once rss "$@"
  read -r kib <"$work/time"
  echo "$best $kib"
}

read -r floor_s floor_kib < <(measure "$target/examples/pcap_count" "$capture")
read -r nw_s nw_kib < <(measure "$target/netwatch" replay "$capture" --headless -o json)
read -r ts_s ts_kib < <(runs=1 measure tshark -r "$capture" -q -z conv,tcp -z conv,udp)

awk -v p="$packets" -v fs="$floor_s" -v fk="$floor_kib" -v ns="$nw_s" -v nk="$nw_kib" -v ts="$ts_s" -v tk="$ts_kib" 'BEGIN {
  printf "%-10s %8s %14s %10s\n", "", "seconds", "packets/s", "peak MB"
  printf "%-10s %8.3f %14.0f %10.1f\n", "floor", fs, p/(fs>0?fs:0.001), fk/1024
  printf "%-10s %8.3f %14.0f %10.1f\n", "netwatch", ns, p/(ns>0?ns:0.001), nk/1024
  printf "%-10s %8.3f %14.0f %10.1f\n", "tshark", ts, p/(ts>0?ts:0.001), tk/1024
  printf "netwatch / floor: %.2fx (target <= 2x)   tshark / netwatch: %.1fx (target >= 25x)   netwatch peak: %.1f MB (target < 100 MB)\n", ns/(fs>0?fs:0.001), ts/(ns>0?ns:0.001), nk/1024
}'

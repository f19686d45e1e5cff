#!/usr/bin/env bash
# The live capture benchmark (issue 5). On a node built from network namespaces (a bridge, two
# pod namespaces on veths), a sender blasts UDP from pod 1 to pod 2 at 10k, 100k and 150k
# packets/s and as fast as it can; each rate is captured, in turn, by
#   netwatch      live capture of pod 1's veth (a pcap thread decoding frames, the supervisor
#                 ordering batches, the run loop counting once and folding into flows: the
#                 library, through the integration test binary's measurement test),
#   netwatch2     the same on both pod veths (every packet seen twice, counted once),
#   netwatch-imm  netwatch in libpcap immediate mode,
#   netwatch-tui  the netwatch binary itself, `netwatch -i VETH --no-kube`, its live view
#                 running in tmux: the whole product (capture, supervisor, the view's loop
#                 and drawing), per packet sent,
#   tcpdump       -w /dev/null on pod 1's veth, same buffer (32 MiB) and snap length (4096),
#   tcpdump-imm   the same with --immediate-mode,
# reporting packets seen, kernel drops, CPU per packet (capture threads, and the whole process)
# and peak memory. Needs root; takes about two minutes.
# Usage: scripts/bench-live.sh [SECONDS_PER_RUN]
# BENCH_RATES (default "10000 100000 150000 0"; 0 = as fast as the sender can) and BENCH_TOOLS
# (default "netwatch netwatch2 netwatch-imm netwatch-tui tcpdump tcpdump-imm") pick a subset; BENCH_SPLIT=1
# also prints netwatch's CPU per frame by thread (capture, supervisor, run loop) on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
need_packages libpcap-dev tcpdump python3
[ "$(id -u)" -eq 0 ] || { echo "bench-live: needs root (network namespaces, packet capture)" >&2; exit 1; }
seconds="${1:-4}"
tools="${BENCH_TOOLS:-netwatch netwatch2 netwatch-imm netwatch-tui tcpdump tcpdump-imm}"
for tool in $tools; do
  case "$tool" in
    netwatch|netwatch2|netwatch-imm|netwatch-tui|tcpdump|tcpdump-imm) ;;
    *) echo "bench-live: unknown tool '$tool' in BENCH_TOOLS" >&2; exit 2 ;;
  esac
done

bin="$(cargo test --release --locked --test integration --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*integration-[0-9a-f]*\)).*/\1/p' | tail -1)"
[ -x "$bin" ] || { echo "bench-live: could not build the integration test binary" >&2; exit 1; }
case " $tools " in
  *" netwatch-tui "*)
    need_packages tmux
    cargo build --quiet --release --locked --bin netwatch
    target_dir="${CARGO_TARGET_DIR:-target}"
    case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
    netwatch_bin="$target_dir/release/netwatch"
    [ -x "$netwatch_bin" ] || { echo "bench-live: could not build netwatch" >&2; exit 1; }
    ;;
esac

s="$$"
node="nwb${s}n"; p1="nwb${s}p1"; p2="nwb${s}p2"; bridge="nwbb${s}"; v1="nwbv${s}p1"; v2="nwbv${s}p2"
started=()
tui="nwbench$$"
cleanup() {
  tmux kill-session -t "$tui" 2>/dev/null || true
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for ns in "$p1" "$p2" "$node"; do ip netns del "$ns" 2>/dev/null || true; done
}
work="$(mktemp -d)"
trap 'cleanup; rm -rf "$work"' EXIT

ip netns add "$node"
n() { ip netns exec "$node" "$@"; }
n ip link set lo up
n ip link add "$bridge" type bridge
n ip addr add 10.244.9.1/24 dev "$bridge"
n ip link set "$bridge" up
for i in 1 2; do
  ns="nwb${s}p$i"; veth="nwbv${s}p$i"
  ip netns add "$ns"
  n ip link add "$veth" type veth peer name eth0 netns "$ns"
  n ip link set "$veth" master "$bridge" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip addr add "10.244.9.1$i/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
done
# A sink that never reads: the kernel drops what overflows its buffer, without ICMP replies.
ip netns exec "$p2" python3 -c 'import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("10.244.9.12",9)); time.sleep(3600)' &
started+=("$!")
sleep 0.5
# Warm ARP so the first packets are not queued behind resolution.
ip netns exec "$p1" ping -c 1 -W 1 10.244.9.12 >/dev/null 2>&1 || true

blast() { # rate → "sent seconds"
  ip netns exec "$p1" env NETWATCH_BLAST="10.244.9.11,10.244.9.12:9,$1,$seconds,64" \
    "$bin" --exact live_capture::blast_udp --ignored --nocapture --test-threads=1 2>/dev/null \
    | sed -n 's/.*BLAST sent=\([0-9]*\) seconds=\([0-9.]*\).*/\1 \2/p'
}

cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }
proc_cpu_ns() { local t=0; for f in /proc/"$1"/task/*/schedstat; do t=$((t + $(awk '{print $1}' "$f"))); done; echo "$t"; }

run_netwatch() { # rate ifaces [immediate] → "sent secs frames dropped capture_ns total_ns rss_kib"
  local rate="$1" ifaces="$2" mode="${3:-}" out="$work/nw.out"
  n env NETWATCH_BENCH="$ifaces;$((seconds + 3));1;$mode" \
    "$bin" --exact live_capture::measure_live_capture --ignored --nocapture --test-threads=1 >"$out" 2>&1 &
  local pid=$!
  started+=("$pid")
  sleep 1
  read -r sent secs < <(blast "$rate")
  wait "$pid"
  local line; line="$(grep -o 'BENCH .*' "$out")" || { cat "$out" >&2; exit 1; }
  v() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $line"; }
  # CPU per frame over the frames counted while CPU was measured, scaled to all frames seen.
  local frames measured; frames="$(v frames)"; measured="$(v measured)"; [ "$measured" -gt 0 ] || measured=1
  [ -n "${BENCH_SPLIT:-}" ] && echo "split per frame (ns): capture $(( $(v capture_cpu_ns) / measured )) supervisor $(( $(v supervisor_cpu_ns) / measured )) run loop $(( $(v main_cpu_ns) / measured ))" >&2
  echo "$sent $secs $frames $(v dropped) $(( $(v capture_cpu_ns) * frames / measured )) $(( ($(v capture_cpu_ns) + $(v supervisor_cpu_ns) + $(v main_cpu_ns)) * frames / measured )) $(v peak_rss_kib)"
}

run_tcpdump() { # rate [--immediate-mode] → "sent secs packets dropped cpu_ns rss_kib"
  local rate="$1" err="$work/td.err"
  # shellcheck disable=SC2086 # the optional flag is meant to split
  ip netns exec "$node" tcpdump -i "$v1" -p -n ${2:-} -B 32768 -s 4096 -w /dev/null 2>"$err" &
  local pid=$!
  started+=("$pid")
  sleep 1
  local before; before="$(proc_cpu_ns "$pid")"
  read -r sent secs < <(blast "$rate")
  sleep 0.5
  local cpu=$(( $(proc_cpu_ns "$pid") - before ))
  local rss; rss="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  kill -INT "$pid"; wait "$pid" || true
  local captured dropped
  captured="$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$err")"
  dropped="$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$err")"
  echo "$sent $secs $captured $dropped $cpu $rss"
}

run_tui() { # rate → "sent secs seen dropped cpu_ns rss_kib" (seen: packets sent; dropped: ? if unread)
  local rate="$1" err="$work/tui.err" command
  # exec all the way down: the pane's process is netwatch itself.
  command="exec ip netns exec $(printf '%q' "$node") $(printf '%q' "$netwatch_bin") -i $(printf '%q' "$v1") --no-kube 2>$(printf '%q' "$err")"
  tmux new-session -d -s "$tui" -x 200 -y 50 "$command"
  sleep 1.5
  local pid; pid="$(tmux list-panes -t "$tui" -F '#{pane_pid}' 2>/dev/null)" || pid=""
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != netwatch ]; then
    echo "bench-live: netwatch's live view did not start:" >&2; cat "$err" >&2; exit 1
  fi
  local before; before="$(proc_cpu_ns "$pid")"
  read -r sent secs < <(blast "$rate")
  # Until the view has worked off what it queued (its CPU back to the idle redraws, under 5 ms
  # in half a second) and shown a stats update (every second): at least 1.5 s, at most 10.
  sleep 1
  local last now waited=0
  last="$(proc_cpu_ns "$pid")"
  while sleep 0.5; now="$(proc_cpu_ns "$pid")"; [ $((now - last)) -ge 5000000 ] && [ "$waited" -lt 18 ]; do
    last="$now"; waited=$((waited + 1))
  done
  local cpu=$(( $(proc_cpu_ns "$pid") - before ))
  local rss; rss="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  local drops; drops="$(tmux capture-pane -p -t "$tui" | sed -n 's/.*drops \([0-9]*\).*/\1/p' | head -1)"
  tmux send-keys -t "$tui" q
  sleep 0.5
  tmux kill-session -t "$tui" 2>/dev/null || true
  echo "$sent $secs $sent ${drops:-?} $cpu $rss"
}

row() { # tool rate sent secs seen dropped capture_ns all_ns rss_kib (dropped or capture_ns "-"/"?": not known)
  awk -v t="$1" -v l="$2" -v s="$3" -v d="$4" -v f="$5" -v x="$6" -v c="$7" -v a="$8" -v r="$9" \
    'BEGIN { printf "%-13s %9s %11.0f %11d %8s %14s %14.2f %9.1f\n", t, l, s/d, f, x, (c == "-" ? "-" : sprintf("%.2f", c/1000/(f>0?f:1))), a/1000/(f>0?f:1), r/1024 }'
}
printf '%-13s %9s %11s %11s %8s %14s %14s %9s\n' tool rate sent/s seen dropped "µs/pkt(capt)" "µs/pkt(all)" "peak MB"
for rate in ${BENCH_RATES:-10000 100000 150000 0}; do
  label="$rate"; [ "$rate" = 0 ] && label=max
  for tool in $tools; do
    case "$tool" in
      netwatch) read -r sent secs frames dropped cap_ns all_ns rss < <(run_netwatch "$rate" "$v1") ;;
      netwatch2) read -r sent secs frames dropped cap_ns all_ns rss < <(run_netwatch "$rate" "$v1,$v2") ;;
      netwatch-imm) read -r sent secs frames dropped cap_ns all_ns rss < <(run_netwatch "$rate" "$v1" immediate) ;;
      netwatch-tui) read -r sent secs frames dropped all_ns rss < <(run_tui "$rate"); cap_ns=- ;;
      tcpdump) read -r sent secs frames dropped cap_ns rss < <(run_tcpdump "$rate"); all_ns="$cap_ns" ;;
      tcpdump-imm) read -r sent secs frames dropped cap_ns rss < <(run_tcpdump "$rate" --immediate-mode); all_ns="$cap_ns" ;;
    esac
    row "$tool" "$label" "$sent" "$secs" "$frames" "$dropped" "$cap_ns" "$all_ns" "$rss"
  done
done
echo "seen: frames captured (netwatch2 captures both pod veths: each packet twice); -imm: immediate mode."
echo "µs/pkt(capt): CPU of the capture thread(s) per frame; µs/pkt(all): the whole process per frame"
echo "(netwatch: capture threads, supervisor, and the run loop counting once and folding into flows;"
echo "netwatch-tui: the whole netwatch process with its live view, per packet sent; drops read off its header)."

#!/usr/bin/env bash
# Measures faultline's proxy in one run beside direct loopback TCP,
# Toxiproxy 2.12.0 and two reference relays (a minimal C relay built here,
# bench/splice-relay.c, and socat if installed), and writes the figures to
# bench/results/proxy.md: each against Toxiproxy, the best relay and the
# limit (direct TCP), with what limits them here.
#
#   bench/run.sh                 # 3 runs of each target (medians)
#   RUNS=1 bench/run.sh          # quicker
#   TOXIPROXY=0 bench/run.sh     # skip the Toxiproxy 2.12.0 comparison
#   NOTE="a build ran" bench/run.sh   # say what else ran, in the results
#   SIZE=$((64<<20)) RUNS=1 bench/run.sh   # a quick check of the script
#
# Client, upstream and proxy share this machine's cores, as in the figures
# the issue quotes for Toxiproxy; nothing is pinned to a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
TOXIPROXY=${TOXIPROXY:-1}
NOTE=${NOTE:-}
SIZE=${SIZE:-$((512 << 20))} # bytes per throughput run, each way
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "building..." >&2
go build -o "$work/faultline" ./cmd/faultline
go build -o "$work/proxybench" ./bench/proxybench
if ! cc -O2 -pthread -o "$work/splice-relay" bench/splice-relay.c 2>"$work/cc.log"; then
  echo "no C compiler: measuring without the C relay" >&2
fi
if [ "$TOXIPROXY" = 1 ]; then
  if ! GOBIN="$work" go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0 2>"$work/tp.log"; then
    echo "Toxiproxy 2.12.0 did not build; measuring without it" >&2
    TOXIPROXY=0
  fi
fi

raw="$work/runs.jsonl"
# start_server NAME: starts a proxy server on a free port; sets api and spid.
start_server() {
  local port; port=$("$work/proxybench" -freeport)
  case "$1" in
    faultline) "$work/faultline" serve --port "$port" 2>"$work/serve.log" & ;;
    toxiproxy) LOG_LEVEL=fatal "$work/server" -host 127.0.0.1 -port "$port" >"$work/tp.log" 2>&1 & ;;
  esac
  spid=$!; pids+=("$spid"); api="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$api/version" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$1 did not start" >&2; exit 1
}
# socat, a minimal relay in C, if installed: a floor for what any user-space
# proxy costs on this machine (one process forked per connection, so its
# connection rate says little).
socat_targets() {
  command -v socat >/dev/null 2>&1 || return 0
  local via=() up port
  for up in "${ups[1]}" "${ups[3]}" "${ups[5]}"; do
    port=$("$work/proxybench" -freeport)
    socat "TCP-LISTEN:$port,fork,reuseaddr,bind=127.0.0.1" "TCP:$up" &
    pids+=($!); via+=("127.0.0.1:$port")
  done
  sleep 0.3
  "$work/proxybench" -size "$SIZE" "${ups[@]}" -name "socat (reference)" -through "$(IFS=,; echo "${via[*]}")" >>"$raw"
  for _ in 1 2 3; do kill "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; done
}
# The minimal C relay: a thread per direction moving bytes with splice(2),
# nothing else. What it costs is what any user-space relay costs here.
c_relay_targets() {
  [ -x "$work/splice-relay" ] || return 0
  local via=() rp=() up port
  for up in "${ups[1]}" "${ups[3]}" "${ups[5]}"; do
    port=$("$work/proxybench" -freeport)
    "$work/splice-relay" "$port" "$up" &
    rp+=($!); pids+=($!); via+=("127.0.0.1:$port")
  done
  sleep 0.3
  # -pid: the echo relay's, for its memory per idle connection.
  "$work/proxybench" -size "$SIZE" "${ups[@]}" -name "C splice relay (reference)" -through "$(IFS=,; echo "${via[*]}")" -pid "${rp[2]}" -only up,down,rtt,conn,idle >>"$raw"
  for p in "${rp[@]}"; do kill "$p" 2>/dev/null || true; done
}
servers=(faultline)
[ "$TOXIPROXY" = 1 ] && servers+=(toxiproxy)
# The upstream servers run in a process of their own, apart from the client.
mkfifo "$work/up.in"
"$work/proxybench" -size "$SIZE" -upstreams <"$work/up.in" >"$work/up.addrs" &
pids+=($!)
exec 3>"$work/up.in"
for _ in $(seq 100); do [ -s "$work/up.addrs" ] && break; sleep 0.1; done
read -r -a ups <"$work/up.addrs"
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS: direct" >&2
  "$work/proxybench" -size "$SIZE" "${ups[@]}" -name direct >>"$raw"
  echo "run $run/$RUNS: C splice relay" >&2
  c_relay_targets
  echo "run $run/$RUNS: socat" >&2
  socat_targets
  for s in "${servers[@]}"; do
    for tox in false true; do
      name=$s; [ $tox = true ] && name="$s, 3 toxics each stream"
      echo "run $run/$RUNS: $name" >&2
      start_server "$s"
      "$work/proxybench" -size "$SIZE" "${ups[@]}" -name "$name" -api "$api" -pid "$spid" -toxics=$tox >>"$raw"
      kill "$spid"; wait "$spid" 2>/dev/null || true
    done
  done
done

mkdir -p bench/results
out=bench/results/proxy.md
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# Proxy figures"
  echo
  echo "Written by \`bench/run.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(go version | cut -d' ' -f3), $(uname -r))."
  echo "Load average (1, 5, 15 min) $load_before at the start, $load_after at the end.${NOTE:+ Also running: $NOTE.}"
  echo "Each figure is the median of $RUNS runs, all targets measured in the same run."
  echo "Client, upstream servers and proxy are three processes on the same cores. Throughput moves $(( $(head -1 "$raw" | sed 's/.*"throughput_bytes":\([0-9]*\).*/\1/') >> 20 )) MiB one direction at a time;"
  echo "the round trip is a 64-byte echo; new connections are sequential (dial, 1-byte echo, close);"
  echo "memory is the proxy process's RSS growth per idle connection (2000 connections, each after a 1-byte echo);"
  echo "the latency figure is what a 100 ms downstream latency toxic adds to 64-byte echoes sent every 10 ms (300 of them), less 100 ms:"
  echo "its mean and 99th percentile, each against the mean round trip at the same pace without the toxic."
  echo "\"3 toxics each stream\" is latency 0 ms, bandwidth at 100 GB/s and limit_data of 2^60 bytes on both streams."
  echo "The C splice relay is bench/splice-relay.c, built by this script; socat, when installed, forks a process per connection, so its connection rate says little."
  echo
  "$work/proxybench" -report "$raw"
  echo
  cat bench/proxy-limits.md
  echo
  echo "Raw runs (JSON lines):"
  echo
  echo '```'
  cat "$raw"
  echo '```'
} >"$out"
cat "$out"

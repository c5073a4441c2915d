#!/usr/bin/env bash
# Measures what reading HTTP costs the proxy: wrk drives a trivial HTTP
# server directly, through a faultline proxy in byte mode, and through one
# in HTTP mode (an http_status toxic that matches no request, so every
# request is parsed and passed on), in one run, and writes the figures as
# ratios to direct to bench/results/httpstage.md. Needs wrk.
#
#   bench/httpstage.sh            # 3 runs, medians
#   RUNS=1 bench/httpstage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { exec 3>&- 2>/dev/null || true; for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/faultline" ./cmd/faultline
go build -o "$work/loadbench" ./bench/loadbench
go build -o "$work/proxybench" ./bench/proxybench

mkfifo "$work/in"
"$work/loadbench" -serve <"$work/in" >"$work/url" &
pids+=($!)
exec 3>"$work/in"
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(cat "$work/url")                 # http://127.0.0.1:PORT/
up=${url#http://}; up=${up%/}

api_port=$("$work/proxybench" -freeport)
"$work/faultline" serve --port "$api_port" 2>"$work/serve.log" &
pids+=($!)
api="http://127.0.0.1:$api_port"
for _ in $(seq 100); do curl -fs "$api/version" >/dev/null 2>&1 && break; sleep 0.1; done
fl() { "$work/faultline" --api "$api" "$@" >/dev/null; }
byte_port=$("$work/proxybench" -freeport); http_port=$("$work/proxybench" -freeport)
fl proxy create bytes -l "127.0.0.1:$byte_port" -u "$up"
fl proxy create http -l "127.0.0.1:$http_port" -u "$up"
fl toxic add http -t http_status -a status=503 -a path=/never-requested

rps() { wrk -t2 -c64 -d5s --latency "$1" | awk '/Requests\/sec/ {r=$2} /^ +50%/ {p=$2} END {print r, p}'; }
declare -A r p
for run in $(seq "$RUNS"); do
  for target in direct bytes http; do
    case $target in
      direct) u=$url ;;
      bytes) u="http://127.0.0.1:$byte_port/" ;;
      http) u="http://127.0.0.1:$http_port/" ;;
    esac
    echo "run $run/$RUNS: $target" >&2
    read -r rate p50 < <(rps "$u")
    r[$target]+="$rate "; p[$target]+="$p50 "
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# wrk prints latencies with units (us, ms, s): to microseconds.
us() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else if (v ~ /s$/) print n*1e6; else print n }'; }
med_us() { local out=(); for v in $1; do out+=("$(us "$v")"); done; median "${out[*]}"; }
d=$(median "${r[direct]}"); b=$(median "${r[bytes]}"); h=$(median "${r[http]}")
dp=$(med_us "${p[direct]}"); bp=$(med_us "${p[bytes]}"); hp=$(med_us "${p[http]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mkdir -p bench/results
{
  echo "# HTTP stage figures"
  echo
  echo "Written by \`bench/httpstage.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(go version | cut -d' ' -f3)); medians of $RUNS runs."
  echo "wrk -t2 -c64 for 5 s against a trivial Go HTTP server (2-byte answers), directly and through a faultline proxy;"
  echo "in HTTP mode the proxy parses every request and answer (an http_status toxic for a path nobody asks) and"
  echo "passes them through its loopback pair to the byte links. Client, proxy and server share the cores."
  echo
  echo "| path | requests/s (× direct) | latency p50 (× direct) |"
  echo "|---|---|---|"
  echo "| direct | $(printf '%.0f' "$d") (1.00) | ${dp} µs (1.00) |"
  echo "| proxy, byte mode | $(printf '%.0f' "$b") (**$(ratio "$b" "$d")×**) | ${bp} µs (**$(ratio "$bp" "$dp")×**) |"
  echo "| proxy, HTTP mode | $(printf '%.0f' "$h") (**$(ratio "$h" "$d")×**) | ${hp} µs (**$(ratio "$hp" "$dp")×**) |"
  echo
  echo "HTTP mode against byte mode: $(ratio "$h" "$b")× the requests/s."
  echo
  echo "Runs (requests/s): direct ${r[direct]}; bytes ${r[bytes]}; http ${r[http]}"
} >bench/results/httpstage.md
cat bench/results/httpstage.md

#!/usr/bin/env bash
# Measures faultline's load engine against wrk, both driving the same
# trivial server (its own process) on this machine, and writes
# bench/results/load.md. Needs wrk (Debian's package).
#
#   bench/load.sh              # 3 runs, medians
#   RUNS=1 bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/loadbench" ./bench/loadbench
mkfifo "$work/in"
"$work/loadbench" -serve <"$work/in" >"$work/url" &
exec 3>"$work/in"
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(cat "$work/url")
wrk_rps=(); max_rps=(); max64_rps=(); exact=()
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  wrk_rps+=("$(wrk -t2 -c64 -d5s "$url" | awk '/Requests\/sec/ {print $2}')")
  max_rps+=("$("$work/loadbench" -url "$url" -rate 200000 -d 5s | sed 's/.*"completed_per_s":\([0-9.]*\).*/\1/')")
  max64_rps+=("$("$work/loadbench" -url "$url" -rate 200000 -workers 64 -d 5s | sed 's/.*"completed_per_s":\([0-9.]*\).*/\1/')")
  exact+=("$("$work/loadbench" -url "$url" -rate 10000 -d 5s)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
w=$(median "${wrk_rps[@]}"); m=$(median "${max_rps[@]}"); m64=$(median "${max64_rps[@]}")
mkdir -p bench/results
{
  echo "# Load engine figures"
  echo
  echo "Written by \`bench/load.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(go version | cut -d' ' -f3)); medians of $RUNS runs."
  echo "Both drive the same trivial Go HTTP server, in a process of its own, on loopback, for 5 s."
  echo
  echo "| figure | value |"
  echo "|---|---|"
  echo "| wrk -t2 -c64, requests/s | $(printf '%.0f' "$w") |"
  echo "| faultline load engine asked 200,000/s, 64 workers (wrk's 64 connections), completed requests/s | $(printf '%.0f' "$m64") |"
  echo "| ratio to wrk, same 64 connections | **$(awk -v a="$m64" -v b="$w" 'BEGIN {printf "%.2f", a/b}')×** |"
  echo "| faultline load engine asked 200,000/s, default 1,024 workers, completed requests/s | $(printf '%.0f' "$m") |"
  echo "| ratio to wrk, default workers | **$(awk -v a="$m" -v b="$w" 'BEGIN {printf "%.2f", a/b}')×** |"
  echo
  echo "At a constant 10,000 requests/s (issued rate from the intended start times; latency from each request's intended start):"
  echo
  echo '```'
  printf '%s\n' "${exact[@]}"
  echo '```'
} >bench/results/load.md
cat bench/results/load.md

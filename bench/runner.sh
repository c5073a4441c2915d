#!/usr/bin/env bash
# Measures the experiment runner and writes bench/results/runner.md:
#  - its own CPU (user+system seconds per second) while it drives 1,000
#    requests/s through an embedded proxy to a small local service;
#  - the time from a stop condition firing to every fault reverted.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/faultline" ./cmd/faultline
go build -o "$work/svc" ./runner/testdata/svc
go build -o "$work/runnerbench" ./bench/runnerbench

cat >"$work/load.yaml" <<YAML
name: runner-cpu
targets:
  svc:
    process: {command: [$work/svc, -mode, dep, -listen, "127.0.0.1:{port}"], ready: "http://127.0.0.1:{port}/health"}
  link:
    proxy: {listen: "127.0.0.1:0", upstream: "{svc.addr}"}
traffic: {rate: 1000/s, timeout: 2s, requests: ["GET http://{link.addr}/"]}
steady_state: [error_rate < 1%]
baseline: 3s
faults: [{name: small latency, target: link, latency: {delay: 1ms}, duration: 4s}]
recovery: 6s
stop_when: [error_rate > 50% for 2s]
YAML
cat >"$work/stop.yaml" <<YAML
name: runner-stop
targets:
  svc:
    process: {command: [$work/svc, -mode, dep, -listen, "127.0.0.1:{port}"], ready: "http://127.0.0.1:{port}/health"}
  link:
    proxy: {listen: "127.0.0.1:0", upstream: "{svc.addr}"}
traffic: {rate: 200/s, timeout: 1s, requests: ["GET http://{link.addr}/"]}
baseline: 1s
faults:
  - {name: outage, target: link, down: {}, duration: 20s}
  - {name: slow, target: link, latency: {delay: 1s}, start: 0s, duration: 20s}
recovery: 2s
stop_when: [error_rate > 50%]
YAML
cpu=(); stop=()
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  /usr/bin/time -f "%U %S %e" -o "$work/time" "$work/faultline" run "$work/load.yaml" --out "$work/load-$run" --state-dir "$work/state" >/dev/null 2>&1 || true
  cpu+=("$(awk '{printf "%.3f", ($1+$2)/$3}' "$work/time")")
  "$work/faultline" run "$work/stop.yaml" --out "$work/stop-$run" --state-dir "$work/state" >/dev/null 2>&1 || true
  stop+=("$("$work/runnerbench" -journal "$work/stop-$run")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mkdir -p bench/results
{
  echo "# Runner figures"
  echo
  echo "Written by \`bench/runner.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(go version | cut -d' ' -f3)); medians of $RUNS runs."
  echo
  echo "| figure | value | goal |"
  echo "|---|---|---|"
  echo "| runner CPU driving 1,000 requests/s through an embedded proxy (the whole faultline process, cores used over the run) | $(median "${cpu[@]}") | |"
  echo "| stop condition fired → every fault reverted (2 faults) | $(median "${stop[@]}") ms | ≤ 1000 ms |"
  echo
  echo "Runs: CPU ${cpu[*]}; stop to reverted ${stop[*]} ms."
} >bench/results/runner.md
cat bench/results/runner.md

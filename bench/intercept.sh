#!/usr/bin/env bash
# Measures a client in one isolated network namespace reaching a server in
# another: directly, through an explicit faultline proxy, and through an
# intercept (nf_tables redirect into the same proxy), in one run, and
# writes the figures as ratios to direct to bench/results/intercept.md.
# Needs root (it makes namespaces, a bridge and nftables tables, and
# removes them at the end).
#
#   bench/intercept.sh           # 3 runs of each target (medians)
#   RUNS=1 bench/intercept.sh    # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
[ "$(id -u)" -eq 0 ] || { echo "bench/intercept.sh needs root" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/interceptbench" ./bench/interceptbench
"$work/interceptbench" -runs "$RUNS" -out bench/results/intercept.md

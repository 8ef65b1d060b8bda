#!/usr/bin/env bash
# Operator benchmarks (issues 6 and 7), in release builds:
#   bench/operator/run.sh              convergence and memory at 1,000 and 10,000 Integrations,
#                                      then Healthy staleness at 10,000
#   bench/operator/run.sh 2000         a smaller run of both
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p switchboard -p switchboard-bench
n="${1:-}"
if [ -n "$n" ]; then
  target/release/operator-scale --counts "$n"
  target/release/status-staleness --count "$n" --failing "$(( n / 50 ))"
else
  target/release/operator-scale --counts 1000,10000
  target/release/status-staleness --count 10000 --failing 200
fi

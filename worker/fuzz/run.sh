#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60), starting from the seeds. A benchmark-
# style command, not part of the test suite: exits non-zero when a target crashes (the input
# is left in artifacts/<target>/).
#
#   worker/fuzz/run.sh 300
#
# cargo-fuzz drives nightly-only rustc flags; this machine has stable Rust, so
# RUSTC_BOOTSTRAP=1 lets them through. No sanitizer: the crate forbids unsafe code, and
# libFuzzer's coverage guidance and panic detection are what matter here.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in template_render xml_parse signature_headers; do
  mkdir -p "corpus/$target"
  cp -n seeds/"$target"/* "corpus/$target/"
  echo "== $target for ${seconds}s"
  cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1
done

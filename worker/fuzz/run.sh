#!/usr/bin/env bash
# Fuzz the webhook signature parsers for a bounded time (default 60 s): a benchmark-style
# check, not part of the test suite. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a
# stable toolchain RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags.
#   worker/fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
mkdir -p corpus/signature_headers
# Seed with well-formed headers so the fuzzer starts from the formats' shapes.
printf 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' > corpus/signature_headers/standard
printf 't=1614265330,v1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' > corpus/signature_headers/stripe
printf 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' > corpus/signature_headers/github
printf 'msg_1\x001614265330\x00v1,AAAA v1a,BBBB\x00{}' > corpus/signature_headers/split
RUSTC_BOOTSTRAP=1 cargo fuzz run signature_headers corpus/signature_headers -- \
  -max_total_time="$seconds" -max_len=4096

#!/usr/bin/env bash
# Calls SFU benchmark (calls/examples/bench.rs): offer→connected median over loopback with
# webrtc-rs clients (default and with a 20 ms ICE check interval), then one publisher → N
# subscribers at increasing packet rates, printed next to a bare UDP relay (recvmmsg → sendmmsg,
# no crypto) measured in the same run.
#
# Usage: scripts/bench-calls.sh [--release] [bench flags: --connect-iters 20 --check-interval-ms 20
#        --subscribers 1,4 --rates 1000,2500,5000,10000 --secs 4 --payload 1000]
# Without --release the bench uses the dev profile of the workspace (dependencies — str0m, the
# crypto, tokio — are built at opt-level 3 there; the calls crate itself at opt-level 1), which
# shares the test build cache. Keep runs short: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/mediaplane/target}
PROFILE=()
if [[ "${1:-}" == "--release" ]]; then PROFILE=(--release); shift; fi
cargo build -q -p calls --example bench "${PROFILE[@]}"
dir=debug; [[ ${#PROFILE[@]} -gt 0 ]] && dir=release
exec "$CARGO_TARGET_DIR/$dir/examples/bench" "$@"

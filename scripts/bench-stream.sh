#!/usr/bin/env bash
# Stream figures, printed side by side: WHIP offer→connected (ffmpeg 9's WHIP muxer and its own
# phase timings), the time from a segment's last frame arriving to the segment being listed in the
# live playlist (real-time ffmpeg RTP feed, playlist polled every POLL_MS), and clip.mp4 for a
# 60 s range vs Debian `ffmpeg -ss -t -c copy` of the same range (from the HLS URL and from a
# local fMP4 copy). Everything runs in one process on loopback (embedded SQLite + disk storage).
# Needs: Debian ffmpeg (scripts/deps/apt.txt), PyPI imageio-ffmpeg in the venv (scripts/deps/pip.txt).
# Knobs: BENCH_SECONDS (75, must exceed CLIP_AT+CLIP_SECONDS), RUNS (10), WHIP_RUNS (5), POLL_MS (2),
# CLIP_AT (5), CLIP_SECONDS (60).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/mediaplane/target}"
export MEDIAPLANE_TEST_VENV="${MEDIAPLANE_TEST_VENV:-$HOME/.cache/mediaplane/venv}"
command -v ffmpeg >/dev/null || { echo "ffmpeg missing (apt-get install ffmpeg)"; exit 1; }
cargo build -q -p stream --example bench_stream
"$CARGO_TARGET_DIR/debug/examples/bench_stream"

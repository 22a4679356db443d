#!/usr/bin/env bash
# Coverage-guided fuzzing of the TURN/STUN message handling (calls/turn/fuzz) with libFuzzer on the
# stable toolchain: the SanitizerCoverage pass is enabled through stable -C flags, which is what
# cargo-fuzz does with `--sanitizer none` (AddressSanitizer would need nightly; the code under test
# has no `unsafe`, so memory errors are not what this hunts — panics and broken invariants are).
#
# Usage: scripts/fuzz-turn.sh [seconds, default 60] [extra libFuzzer flags]
# Crashes land in calls/turn/fuzz/artifacts/; replay one with
#   $CACHE/fuzz-target/x86_64-unknown-linux-gnu/release/turn_message <file>
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
shift || true
CACHE=${MEDIAPLANE_CACHE:-/root/.cache/mediaplane}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
# A separate target dir: these flags must not invalidate the normal build.
TARGET_DIR="$CACHE/fuzz-target"
# Only the code under test is instrumented (through a rustc wrapper, since per-crate RUSTFLAGS
# are not stable): dependencies such as sqlx or the S3 SDK stay plain and build once.
SANCOV="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
mkdir -p "$TARGET_DIR"
WRAPPER="$TARGET_DIR/rustc-sancov"
cat > "$WRAPPER" <<WRAP
#!/usr/bin/env bash
rustc="\$1"; shift
case " \$* " in
  *" --crate-name calls_turn "*|*" --crate-name turn_message "*) exec "\$rustc" "\$@" $SANCOV ;;
  *) exec "\$rustc" "\$@" ;;
esac
WRAP
chmod +x "$WRAPPER"
RUSTC_WRAPPER="$WRAPPER" cargo build -q --release --manifest-path calls/turn/fuzz/Cargo.toml \
  --target "$TRIPLE" --target-dir "$TARGET_DIR"
BIN="$TARGET_DIR/$TRIPLE/release/turn_message"
FUZZ=calls/turn/fuzz
mkdir -p "$FUZZ/artifacts" "$CACHE/fuzz-corpus/turn_message"
# The committed seeds stay read-only; new inputs go to the cache corpus.
exec "$BIN" -max_total_time="$SECONDS_TO_RUN" -artifact_prefix="$FUZZ/artifacts/" -print_final_stats=1 "$@" \
  "$CACHE/fuzz-corpus/turn_message" "$FUZZ/corpus/turn_message"

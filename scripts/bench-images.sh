#!/usr/bin/env bash
# Side-by-side: 4000x3000 JPEG -> 800 px wide JPEG q85 by Mediaplane's transform path, libvips
# (vipsthumbnail) and ImageMagick (/usr/bin/convert); prints per-run wall and CPU time and ratios.
# Then cached-hit requests/s with `wrk` against a real Images server (examples/bench_serve.rs: SQLite + local
# disk, the derivative already cached), or against BENCH_URL if set.
# Needs: libvips-tools, imagemagick, wrk, bc (scripts/deps/apt.txt). Runs: RUNS (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/mediaplane/target}"
RUNS="${RUNS:-10}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

CONVERT=/usr/bin/convert
command -v vipsthumbnail >/dev/null || { echo "vipsthumbnail missing (apt-get install libvips-tools)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing (apt-get install wrk)"; exit 1; }
[ -x "$CONVERT" ] || { echo "$CONVERT missing (apt-get install imagemagick)"; exit 1; }

IN="$WORK/big.jpg"
# A photo-like input: plasma fractal, 4000x3000, quality 92.
"$CONVERT" -size 4000x3000 plasma:fractal -quality 92 "$IN"
echo "input: $(stat -c %s "$IN") bytes, 4000x3000"

cargo build -q -p images --example bench_transform --example bench_serve
BIN="$CARGO_TARGET_DIR/debug/examples/bench_transform"

# Runs "$@" RUNS times; prints the mean wall and CPU (user+sys) seconds per run.
measure() {
  local name="$1"; shift
  local start end cpu0 cpu1 me=$BASHPID
  read -r cpu0 < <(awk '{print $14+$15+$16+$17}' "/proc/$me/stat")
  start=$(date +%s.%N)
  for _ in $(seq "$RUNS"); do "$@" >/dev/null 2>&1; done
  end=$(date +%s.%N)
  read -r cpu1 < <(awk '{print $14+$15+$16+$17}' "/proc/$me/stat")
  local ticks; ticks=$(getconf CLK_TCK)
  local wall cpu
  wall=$(echo "($end - $start) / $RUNS" | bc -l)
  cpu=$(echo "($cpu1 - $cpu0) / $ticks / $RUNS" | bc -l)
  printf "%-22s wall %.3f s  cpu %.3f s  per run\n" "$name" "$wall" "$cpu" >&2
  echo "$wall $cpu"
}

read -r MP_WALL MP_CPU < <(measure "mediaplane (jpeg)" "$BIN" "$IN" "$WORK/mp.jpg" "width=800,quality=85")
read -r MPB_WALL MPB_CPU < <(measure "mediaplane (baseline)" "$BIN" "$IN" "$WORK/mpb.jpg" "width=800,quality=85,format=baseline-jpeg")
read -r VIPS_WALL VIPS_CPU < <(measure "vipsthumbnail" vipsthumbnail "$IN" -s 800x -o "$WORK/vips.jpg[Q=85]")
read -r IM_WALL IM_CPU < <(measure "imagemagick convert" "$CONVERT" "$IN" -resize 800x -quality 85 "$WORK/im.jpg")

echo "in-process: $("$BIN" "$IN" "$WORK/mp2.jpg" "width=800,quality=85" 5)"
for f in mp mpb vips im; do
  printf "%-5s %s\n" "$f" "$(identify -format '%wx%h %b' "$WORK/$f.jpg" 2>/dev/null || stat -c %s "$WORK/$f.jpg")"
done
ratio() { echo "$1 / $2" | bc -l | xargs printf "%.2f"; }
echo "ratio wall  mediaplane/vips: $(ratio "$MP_WALL" "$VIPS_WALL")  baseline/vips: $(ratio "$MPB_WALL" "$VIPS_WALL")  mediaplane/imagemagick: $(ratio "$MP_WALL" "$IM_WALL")"
echo "ratio cpu   mediaplane/vips: $(ratio "$MP_CPU" "$VIPS_CPU")  baseline/vips: $(ratio "$MPB_CPU" "$VIPS_CPU")  mediaplane/imagemagick: $(ratio "$MP_CPU" "$IM_CPU")"
echo "(ratio < 1 means Mediaplane is faster)"

# Cached hits: the server answers from the stored derivative (ETag, Cache-Control), no transform.
WRK_ARGS=(-t2 -c32 -d"${WRK_SECONDS:-5}"s)
if [ -n "${BENCH_URL:-}" ]; then
  URL="$BENCH_URL"
else
  coproc SERVER { "$CARGO_TARGET_DIR/debug/examples/bench_serve" "$IN" "width=800,quality=85"; }
  read -r URL <&"${SERVER[0]}"
fi
echo "cached hits: wrk ${WRK_ARGS[*]} $URL"
WRK_OUT="$(wrk "${WRK_ARGS[@]}" "$URL")"
echo "$WRK_OUT" | grep -E "Latency|Requests/sec|Non-2xx" || true
echo "cached-hit requests/s: $(echo "$WRK_OUT" | awk '/Requests\/sec/ {print $2}')"
if [ -z "${BENCH_URL:-}" ]; then
  exec {SERVER[1]}>&-
  wait "$SERVER_PID" 2>/dev/null || true
fi

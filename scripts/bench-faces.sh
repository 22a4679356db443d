#!/usr/bin/env bash
# RetinaFace speed: tract (images-faces) vs Python onnxruntime, same model, same input tensor, same threads.
# Usage: scripts/bench-faces.sh [size=320] [threads=1] [iters=20]
# Needs python3 with onnxruntime + numpy: $MEDIAPLANE_TEST_VENV, else /root/.cache/mediaplane/venv, else PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-320}
THREADS=${2:-1}
ITERS=${3:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/mediaplane/target}

PY=python3
for venv in "${MEDIAPLANE_TEST_VENV:-}" /root/.cache/mediaplane/venv; do
  if [ -n "$venv" ] && [ -x "$venv/bin/python" ]; then PY="$venv/bin/python"; break; fi
done
if ! "$PY" -c 'import onnxruntime, numpy' 2>/dev/null; then
  echo "bench-faces: onnxruntime/numpy not installed for $PY (pip install onnxruntime numpy)" >&2
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Dev profile: dependencies (tract) are built at opt-level 3 (see the root Cargo.toml).
cargo run -q -p images-faces --example bench_faces -- \
  --size "$SIZE" --threads "$THREADS" --iters "$ITERS" --dump-input "$TMP/input.f32" | tee "$TMP/tract.txt"

"$PY" - "$TMP/input.f32" "$SIZE" "$THREADS" "$ITERS" models/retinaface_mv1_0.25.onnx <<'PY' | tee "$TMP/ort.txt"
import statistics, sys, time
import numpy as np
import onnxruntime as ort

path, size, threads, iters, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
x = np.fromfile(path, dtype="<f4").reshape(1, 3, size, size)
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
for _ in range(3):
    sess.run(None, {name: x})
samples = []
for _ in range(iters):
    t = time.perf_counter()
    outs = sess.run(None, {name: x})
    samples.append((time.perf_counter() - t) * 1000)
print(f"onnxruntime={ort.__version__}")
print(f"ort_network_median_ms={statistics.median(samples):.2f}")
conf = [o for o in outs if o.shape[-1] == 2][0]
print(f"ort_priors_above_0.6={(conf[0, :, 1] >= 0.6).sum()}")
PY

tract=$(sed -n 's/^tract_network_median_ms=//p' "$TMP/tract.txt")
ortms=$(sed -n 's/^ort_network_median_ms=//p' "$TMP/ort.txt")
awk -v t="$tract" -v o="$ortms" -v s="$SIZE" -v n="$THREADS" \
  'BEGIN { printf "RESULT size=%s threads=%s tract=%.2fms onnxruntime=%.2fms ratio=%.2fx (target <= 1.2x)\n", s, n, t, o, t / o }'

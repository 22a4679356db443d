#!/usr/bin/env bash
# RetinaFace speed: images-faces on tract and on onnxruntime (through `ort`, the library from the same PyPI wheel)
# vs Python onnxruntime: same model, same input tensor, same threads.
# Usage: scripts/bench-faces.sh [size=480] [threads="1 2"] [iters=30]
#   threads is a space-separated list; one RESULT line is printed per thread count.
# Needs python3 with onnxruntime + numpy: $MEDIAPLANE_TEST_VENV, else /root/.cache/mediaplane/venv, else PATH.
# Built with --release (thin LTO, dependencies without debug assertions): that is how the gateway ships. The dev
# profile keeps debug assertions on in tract, which costs it extra per-node checks and is not what runs in
# production.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-480}
THREADS=${2:-1 2}
ITERS=${3:-30}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/mediaplane/target}

PY=python3
for venv in "${MEDIAPLANE_TEST_VENV:-}" /root/.cache/mediaplane/venv; do
  if [ -n "$venv" ] && [ -x "$venv/bin/python" ]; then PY="$venv/bin/python"; break; fi
done
if ! "$PY" -c 'import onnxruntime, numpy' 2>/dev/null; then
  echo "bench-faces: onnxruntime/numpy not installed for $PY (pip install onnxruntime numpy)" >&2
  exit 1
fi

ORT_LIB=$("$PY" -c 'import glob, os, onnxruntime; print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*"))[0])')

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cargo build -q --release -p images-faces --example bench_faces
BENCH="$CARGO_TARGET_DIR/release/examples/bench_faces"

echo "machine: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $THREADS; do
  "$BENCH" --size "$SIZE" --threads "$n" --iters "$ITERS" --dump-input "$TMP/input.f32" | tee "$TMP/tract.txt"
  "$BENCH" --size "$SIZE" --threads "$n" --iters "$ITERS" --onnxruntime-library "$ORT_LIB" | tee "$TMP/mport.txt"

  "$PY" - "$TMP/input.f32" "$SIZE" "$n" "$ITERS" models/retinaface_mv1_0.25.onnx <<'PY' | tee "$TMP/ort.txt"
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
# With one intra-op thread onnxruntime runs the graph on the calling thread: its CPU time is the figure a
# busy machine disturbs least (as for tract).
cpu = []
for _ in range(iters):
    t = time.thread_time()
    sess.run(None, {name: x})
    cpu.append((time.thread_time() - t) * 1000)
print(f"onnxruntime={ort.__version__}")
print(f"ort_network_median_ms={statistics.median(samples):.2f}")
print(f"ort_network_min_ms={min(samples):.2f}")
print(f"ort_network_thread_cpu_median_ms={statistics.median(cpu):.2f}")
conf = [o for o in outs if o.shape[-1] == 2][0]
print(f"ort_priors_above_0.6={(conf[0, :, 1] >= 0.6).sum()}")
PY

  get() { sed -n "s/^$1=//p" "$2"; }
  for engine in tract onnxruntime; do
    file="$TMP/tract.txt"; [ "$engine" = onnxruntime ] && file="$TMP/mport.txt"
    awk -v tm="$(get "${engine}_network_median_ms" "$file")" -v om="$(get ort_network_median_ms "$TMP/ort.txt")" \
        -v tn="$(get "${engine}_network_min_ms" "$file")" -v on="$(get ort_network_min_ms "$TMP/ort.txt")" \
        -v s="$SIZE" -v n="$n" -v e="mediaplane-$engine" \
      'BEGIN { printf "RESULT size=%s threads=%s wall median: %s=%.2fms python-onnxruntime=%.2fms ratio=%.2fx | wall min: %.2fms vs %.2fms ratio=%.2fx (target <= 1.2x)\n", s, n, e, tm, om, tm / om, tn, on, tn / on }'
    if [ "$n" = 1 ]; then
      awk -v tc="$(get "${engine}_network_thread_cpu_median_ms" "$file")" \
          -v oc="$(get ort_network_thread_cpu_median_ms "$TMP/ort.txt")" -v s="$SIZE" -v e="mediaplane-$engine" \
        'BEGIN { printf "RESULT size=%s threads=1 thread CPU median: %s=%.2fms python-onnxruntime=%.2fms ratio=%.2fx\n", s, e, tc, oc, tc / oc }'
    fi
  done
done

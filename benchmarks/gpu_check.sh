#!/usr/bin/env bash
# The one prepared GPU measurement (issue: pretraining at GPU speed), for the device tool's `run`:
#   run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/out/whl"], timeout_s=480)
# benchmarks/out/whl holds the wheels the device image lacks (granite-tsfm 0.3.2, transformers
# 4.56.0, huggingface_hub 0.36.2, tokenizers, datasets, dill, multiprocess, Deprecated, jsonschema
# and its dependencies), fetched here with `pip download --no-deps --python-version 3.12 ...`.
# Everything it writes lands in $OUT: env.txt, bench_cuda.json (r1 geometry, bf16, batch 128/512/1024:
# step, step with loader, loader by workers), pytest_cuda.txt, bench_cuda_compile.json.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site benchmarks/out/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
 python3 -c "import torch, transformers, tsfm_public, jsonschema; print(torch.__version__, torch.version.cuda, transformers.__version__)") > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 200 python3 benchmarks/bench_train.py --device cuda --workdir /tmp/bench > "$OUT/bench_cuda.json" 2> "$OUT/bench_cuda.err"
echo "bench rc=$?"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_bench_train.py \
  -k "cuda or kill_and_resume_gives or non_finite_loss_stops or next_log_point or masks_are or device_type or bench" > "$OUT/pytest_cuda.txt" 2>&1
echo "pytest rc=$?"; tail -4 "$OUT/pytest_cuda.txt"
timeout 120 python3 benchmarks/bench_train.py --device cuda --workdir /tmp/bench --compile --batches 1024 --workers-list 8 \
  --no-comparison > "$OUT/bench_cuda_compile.json" 2> "$OUT/bench_cuda_compile.err"
echo "compile rc=$?"
cat "$OUT/bench_cuda.json"; tail -3 "$OUT/bench_cuda.err"

#!/usr/bin/env bash
# The benchmarks a CPU cannot run, at real sizes, in one pass on a CUDA GPU: SDXL-architecture slider
# training steps (512 and 1024 px, bf16, gradient checkpointing), composition of 1-50 sliders on the
# full SDXL UNet, and StyleGAN3 rendering at 1024 px. Random weights throughout: speed and memory only.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR]      # default OUT_DIR: bench-out/gpu
#
# Each benchmark writes OUT_DIR/<name>.log; its last line is the benchmark's JSON object, and
# OUT_DIR/summary.jsonl collects those lines. A benchmark that fails or runs past its time limit is
# reported and the suite goes on. PYTHON picks the interpreter (default: python3); TIME_SCALE multiplies
# every limit; SUITE_SECONDS caps the whole suite (a benchmark gets what is left, and is skipped under 30 s).
set -u
out=${1:-bench-out/gpu}
py=${PYTHON:-python3}
scale=${TIME_SCALE:-1}
deadline=$((SECONDS + ${SUITE_SECONDS:-100000}))
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
: >"$out/summary.jsonl"
export PYTHONUNBUFFERED=1

run() {  # run NAME SECONDS ARGS...: one benchmark under a time limit, its JSON line appended
    local name=$1 limit=$(($2 * scale))
    shift 2
    if [ $((deadline - SECONDS)) -lt "$limit" ]; then limit=$((deadline - SECONDS)); fi
    if [ "$limit" -lt 30 ]; then
        echo "== $name skipped: ${limit}s left of SUITE_SECONDS"
        return
    fi
    local start=$SECONDS
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$py" "$@" --json >"$out/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc after $((SECONDS - start))s"
    if [ "$rc" -eq 0 ]; then
        tail -n 1 "$out/$name.log" | sed "s/^/{\"benchmark_name\": \"$name\", \"result\": /; s/\$/}/" >>"$out/summary.jsonl"
    else
        tail -n 5 "$out/$name.log"
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
"$py" -c "import torch, diffusers, transformers, peft, accelerate; print('torch', torch.__version__, \
'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, \
'accelerate', accelerate.__version__)" 2>&1 | tail -n 1 | tee -a "$out/gpu.txt"

run text_slider_step_sdxl 150 "$here/text_slider_step.py" --arch sdxl --iters 4 --warmup 1
run visual_slider_step_sdxl 120 "$here/visual_slider_step.py" --arch sdxl --resolution 1024 --iters 6 --warmup 1 --rounds 2
run stylegan_render_1024 75 "$here/stylegan_render.py" --configs "" --gpu-configs T1024,R1024 --batches 1,8 --min-seconds 2 --no-nvlabs
run compose_sdxl 180 "$here/compose.py" --arch sdxl --steps 8 --repeats 2
echo "summary: $out/summary.jsonl ($(wc -l <"$out/summary.jsonl") of 4 benchmarks)"

#!/usr/bin/env bash
# The benchmarks a CPU cannot run, at real sizes, in one pass on a CUDA GPU, most valuable first:
# StyleGAN3 rendering at FFHQ-1024 (ours fp32 and fp16, and NVlabs' CUDA kernels in the same run when
# STYLEGAN3_DIR names a clone of NVlabs/stylegan3), composition of 1-50 sliders on the full SDXL UNet,
# one text-slider training iteration at 1024 px (fast vs the original procedure), then, if time is left,
# the visual-slider step. Random weights throughout: speed and memory only. About 7 minutes on an H200.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR] [--cpu]   # default OUT_DIR: bench-out/gpu
#
# --cpu is a dry run of the wiring on a CPU: the same scripts on tiny models with a handful of steps.
# NVlabs on the GPU machine: a clone outside the repository (a scratch folder), with its Python needs
# (click, requests, setuptools<81 for pkg_resources; ninja and nvcc compile its kernels), e.g.
#   STYLEGAN3_DIR=/scratch/stylegan3 PYTHONPATH=/scratch/nvdeps bash benchmarks/gpu_suite.sh
# Without STYLEGAN3_DIR the suite looks in bench-out/nvlabs/ (git-ignored, never committed): a clone in
# bench-out/nvlabs/stylegan3 and those packages in bench-out/nvlabs/deps, for a machine that cannot
# reach the network but receives the working tree's ignored folders.
# Each benchmark writes OUT_DIR/<name>.log; its last line is the benchmark's JSON object, and
# OUT_DIR/summary.jsonl collects those lines. A benchmark that fails or runs past its time limit is
# reported and the suite goes on. PYTHON picks the interpreter (default: python3); TIME_SCALE multiplies
# every limit; SUITE_SECONDS caps the whole suite (default 470; a benchmark gets what is left, and is
# skipped under 30 s).
set -u
out=bench-out/gpu
mode=gpu
for arg in "$@"; do
    case $arg in
        --cpu) mode=cpu ;;
        *) out=$arg ;;
    esac
done
py=${PYTHON:-python3}
nvlabs=$(cd "$(dirname "$0")/.." && pwd)/bench-out/nvlabs
if [ -z "${STYLEGAN3_DIR:-}" ] && [ -d "$nvlabs/stylegan3" ]; then
    export STYLEGAN3_DIR=$nvlabs/stylegan3 PYTHONPATH=$nvlabs/deps${PYTHONPATH:+:$PYTHONPATH} \
        PATH=$nvlabs/deps/bin:$PATH  # ninja, which builds its kernels
fi
echo "NVlabs: ${STYLEGAN3_DIR:-none}"
scale=${TIME_SCALE:-1}
deadline=$((SECONDS + ${SUITE_SECONDS:-470}))
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
: >"$out/summary.jsonl"
export PYTHONUNBUFFERED=1
ran=0

run() {  # run NAME SECONDS ARGS...: one benchmark under a time limit, its JSON line appended
    local name=$1 limit=$(($2 * scale))
    shift 2
    ran=$((ran + 1))
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

if [ "$mode" = gpu ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
    stylegan=(--configs "" --gpu-configs T1024,R1024 --batches 8 --min-seconds 1 --min-runs 3)
    compose=(--arch sdxl --steps 8 --repeats 2 --methods ours,ours_same_scales,ours_lowrank)
    text=(--arch sdxl --resolutions 1024 --iters 8 --warmup 1 --rounds 1)
    visual=(--arch sdxl --resolution 1024 --iters 6 --warmup 1 --rounds 2)
else
    stylegan=(--configs T32,R32 --batches 2 --min-seconds 0 --min-runs 1)
    compose=(--steps 2 --repeats 1 --counts 1 --methods ours)
    text=(--iters 1 --warmup 0 --rounds 1)
    visual=(--iters 2 --warmup 0 --rounds 1)
fi
"$py" -c "import torch, diffusers, transformers, peft, accelerate; print('torch', torch.__version__, \
'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, \
'accelerate', accelerate.__version__)" 2>&1 | tail -n 1 | tee -a "$out/gpu.txt"

run stylegan_render 200 "$here/stylegan_render.py" "${stylegan[@]}"
run compose 120 "$here/compose.py" "${compose[@]}"
run text_slider_step 130 "$here/text_slider_step.py" "${text[@]}"
run visual_slider_step 100 "$here/visual_slider_step.py" "${visual[@]}"
echo "summary: $out/summary.jsonl ($(wc -l <"$out/summary.jsonl") of $ran benchmarks), $SECONDS s"

#!/usr/bin/env bash
# Time a full `toyworld build`, running the stages that do not depend on each other side by side.
#
#   bash benchmarks/toyworld_build.sh [--json] [DEVICE] [WORK] [OUT]   # defaults: cpu runs/toyworld runs/toyworld-out
#
# cpu:  vae (2 threads) -> decoder, probe, gan on one thread beside unet, eval on the other -> ship.
#       Two cores are the design target. The threads per stage are part of the recipe (1 and 2 threads give
#       different bits; each *_done.json records them): this is how the shipped build was made.
# cuda: gan beside the whole chain (each small stage leaves most of a GPU idle), then ship.
# BUILD_ARGS (environment) goes to every stage, e.g. BUILD_ARGS="--unet-steps 6000"; PYTHON picks the
# interpreter. Each stage is a separate process (resumable, skipped once done). Prints "stage seconds-since-start"
# lines as stages end and, last, one JSON object with those times, the device and the exit status.
set -u
args=()
for a in "$@"; do [ "$a" = --json ] || args+=("$a"); done  # the JSON line is always printed
set -- "${args[@]}"
DEVICE=${1:-cpu}
WORK=${2:-runs/toyworld}
OUT=${3:-runs/toyworld-out}
PYTHON=${PYTHON:-python}
mkdir -p "$WORK"
TIMES="$WORK/stage_times.txt"
: > "$TIMES"
start=$(date +%s)

stage() {  # stage NAME THREADS
    "$PYTHON" -m transfer toyworld build --device "$DEVICE" --work "$WORK" --out "$OUT" \
        --threads "$2" --stage "$1" ${BUILD_ARGS:-} > "$WORK/$1.log" 2>&1
    local rc=$?
    echo "$1 $(( $(date +%s) - start )) rc=$rc" | tee -a "$TIMES"
    return $rc
}

build() {
    if [ "$DEVICE" = cpu ]; then
        stage vae 2 || return 1
        ( stage decoder 1 && stage probe 1 && stage gan 1 ) & local branch=$!
        stage unet 1 && stage eval 1; local unet_rc=$?
        wait $branch && [ $unet_rc = 0 ] && stage ship 2
    else
        stage gan 4 & local gan=$!
        stage vae 4 || { wait $gan; return 1; }
        ( stage decoder 4 && stage probe 4 ) & local branch=$!
        stage unet 4 && stage eval 4; local unet_rc=$?
        wait $branch && local branch_rc=0 || local branch_rc=1
        wait $gan && [ $branch_rc = 0 ] && [ $unet_rc = 0 ] && stage ship 4
    fi
}

build
rc=$?
"$PYTHON" - "$TIMES" "$DEVICE" "$rc" <<'EOF'
import json, sys
times = {line.split()[0]: int(line.split()[1]) for line in open(sys.argv[1]) if line.strip()}
print(json.dumps({"benchmark": "toyworld_build", "device": sys.argv[2], "rc": int(sys.argv[3]),
                  "stage_end_s": times, "total_s": max(times.values(), default=0)}))
EOF
exit $rc

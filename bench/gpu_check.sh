#!/usr/bin/env bash
# The day a GPU is lent (issue 38): the CUDA path end to end and the figures docs/gpu.md's memory table needs, in
# one run of about 8 minutes on one H100. Needs `make install LOCK=requirements/cuda.lock` first.
#
#   bash bench/gpu_check.sh [OUT]        # OUT defaults to bench/results/gpu-check; writes OUT/gpu_check.json
#
# 1. tiny: the llama31_8b preset's real `dvc exp run` (every stage) on CUDA, with a tiny random Llama-3.1-family
#    model carrying the real tokenizer (tools/random_model.py), as tests/test_gpu_presets.py runs it on the CPU.
# 2. 7b: Mistral-7B's exact architecture with random weights (the mistral_7b preset's recipe: NF4, LoRA on every
#    linear layer, batch 4 x 512, checkpointing on), each stage run alone so that its peak GPU memory is its own:
#    nvidia-smi's used memory (CUDA context included, what a card must hold), sampled every 0.2 s. Training speed
#    from metrics/train/timing.json. A stage that fails stops the script with its own error line.
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU with the tiny model only (how this script is checked here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bench/results/gpu-check}" && cd "${1:-$root/bench/results/gpu-check}" && pwd)
device=${GPU_CHECK_DEVICE:-cuda}
export PATH="$root/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  python -c "import torch; assert torch.cuda.is_available(), 'no CUDA: install requirements/cuda.lock on a GPU machine'"
fi

project() {  # a fresh git+DVC project of this checkout's pipeline in $1 with the model $2 built by random_model.py
  local dir=$1 arch=$2
  mkdir -p "$dir"
  (cd "$root" && git ls-files -z dvc.yaml stages src assets conf .dvc/config .dvcignore .gitignore data/raw/README.md \
     models/local/README.md models/.gitignore | xargs -0 cp --parents -t "$dir")
  python "$root/tools/random_model.py" --arch "$arch" --out "$dir/models/local/$arch" >/dev/null
  (cd "$dir" && git init -q && git add -A && git -c user.name=gpu-check -c user.email=gpu@check.invalid commit -qm p)
}

peak() {  # run "$@", print its wall seconds and the GPU's peak used MiB while it ran
  local log=$out/.mem start=$SECONDS sampler="" status=0
  : > "$log"
  if [ "$device" = cuda ]; then
    (while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$log"; sleep 0.2; done) &
    sampler=$!
  fi
  "$@" > "$out/.stage.log" 2>&1 || status=$?
  [ -z "$sampler" ] || kill "$sampler" 2>/dev/null
  if [ $status -ne 0 ]; then tail -n 20 "$out/.stage.log" >&2; echo "error: $* failed ($status)" >&2; exit $status; fi
  echo "$((SECONDS - start)) $(sort -n "$log" | tail -n 1)"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data="-S data=rotten_tomatoes -S data.max_train=64 -S data.max_validation=16 -S data.max_test=32"

# 1. the tiny preset end to end on the device
project "$work/tiny" llama3-tiny
read -r tiny_s tiny_mib < <(cd "$work/tiny" && peak dvc exp run -S experiment=llama31_8b -S model.source=local \
  -S model.name=models/local/llama3-tiny -S "runtime.device=$device" $data)
grep -q "\"device\": \"cpu\"" "$work/tiny/models/adapter/qlora_sentiment.json" && [ "$device" = cuda ] && \
  { echo "error: the tiny preset ran on the CPU" >&2; exit 1; }
echo "tiny llama31_8b preset, every stage on $device: ${tiny_s} s, peak ${tiny_mib:-n/a} MiB"

big="{}"
if [ "$device" = cuda ]; then
  # 2. a random-weight 7B, one stage at a time
  project "$work/7b" mistral-7b
  cd "$work/7b"
  python "$root/tools/compose_params.py" --out params.yaml experiment=mistral_7b model.source=local \
    model.name=models/local/mistral-7b data=rotten_tomatoes data.max_train=320 data.max_validation=32 data.max_test=64 train.max_steps=20 \
    train.save_steps=1000 > /dev/null
  big="{"
  for stage in base_model prepare train baseline evaluate export; do
    read -r s mib < <(peak dvc repro -s --force "$stage")
    big="$big\"$stage\": {\"seconds\": $s, \"peak_mib\": ${mib:-null}}, "
    echo "7b $stage: ${s} s, peak ${mib} MiB"
  done
  big="$big\"timing\": $(cat metrics/train/timing.json)}"
  cd "$root"
fi
printf '{"device": "%s", "tiny": {"seconds": %s, "peak_mib": %s}, "7b": %s}\n' "$device" "$tiny_s" \
  "${tiny_mib:-null}" "$big" > "$out/gpu_check.json"
echo "wrote $out/gpu_check.json"

#!/usr/bin/env bash
# The GPU tier, on a machine with a CUDA GPU and this package installed; every part writes a log into OUT:
#
#   bash benchmarks/gpu_tier.sh OUT [DAVIS_ROOT] [RUNS_ROOT]
#
#   gpu.txt          the GPU, its memory and driver; torch's version and CUDA build
#   pytest_gpu.log   the GPU tests (pytest -m gpu): bf16/fp16 training on CUDA, fp16 overflow skipped and counted
#                    (RELIABILITY N6), train.deterministic=true on CUDA (D5), point sampling a function of the seed
#   matcher_speed.log  the matcher's grouping of equal targets on CUDA: torch.unique over rows vs integer keys
#   demo.log         `s2d run experiment=paper` on the embedded demo (short: STEPS steps a stage; the log's
#                    "clips/s" lines are the real-data throughput and peak memory of each learning stage), through
#                    DDP's code path (train.strategy=ddp on the one GPU: NCCL, distributed sampler, ranks' means)
#   davis.log        the same on the DAVIS clips at 360p, without DDP
#   runs.tgz         both runs' reports, metrics and pictures
#   profile.log      benchmarks/train_speed.py --profile in bf16: the GPU's busy share of a paper-sized step
#                    (random clips, 4 x 3 frames, 640x360), its heaviest kernels, the host functions it waits for
#   train_speed.log  train_speed.py on CUDA in bf16 and float32: clips/s and peak memory, tiny and paper model
#
# STEPS (default 40) sets the steps per learning stage; a stage's part stops after PART_S seconds (default 240).
# The short schedule trains from scratch: its AP is not the method's, the run proves the path and measures speed.
set -u
out=${1:?usage: gpu_tier.sh OUT [DAVIS_ROOT] [RUNS_ROOT]}
davis=${2:-../shared/data/davis2016}
runs=${3:-outputs}
steps=${STEPS:-40}
part=${PART_S:-240}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} > "$out/gpu.txt" 2>&1
timeout 180 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_precision.py > "$out/pytest_gpu.log" 2>&1
echo "exit $?" >> "$out/pytest_gpu.log"
timeout 90 python3 benchmarks/matcher_speed.py --device cuda --repeats 5 > "$out/matcher_speed.log" 2>&1
# a short schedule from scratch: the solver's rate of the CPU schedule (the paper's 1e-6 assumes pretrained
# weights) and a low label threshold, so that the dense labelset of 100 steps is not empty
short=(experiment=paper "train.max_steps=$steps" optim.lr=1e-4 optim.milestones=[] distill.distill_warmup=$((steps / 2))
       label.score_thr=0.05 train.log_every_n_steps=10 progress=false "paths.output_root=$runs")
timeout "$part" s2d run "${short[@]}" train.strategy=ddp train.devices=1 name=gpu_demo > "$out/demo.log" 2>&1
echo "exit $?" >> "$out/demo.log"
timeout "$part" s2d run "${short[@]}" data=davis "data.root=$davis" data.short_side=360 name=gpu_davis \
  > "$out/davis.log" 2>&1
echo "exit $?" >> "$out/davis.log"
(cd "$runs/runs" && tar czf - --exclude='*.ckpt' --exclude=checkpoints --exclude='*.pt' --exclude='*.npz' \
  gpu_demo* gpu_davis*) > "$out/runs.tgz" 2>/dev/null
timeout 120 python3 benchmarks/train_speed.py --device cuda --amp --steps 5 --profile > "$out/profile.log" 2>&1
{ timeout 120 python3 benchmarks/train_speed.py --device cuda --amp --steps 10
  timeout 120 python3 benchmarks/train_speed.py --device cuda --steps 10; } > "$out/train_speed.log" 2>&1

#!/usr/bin/env bash
# Multi-GPU / multi-node training with torchrun: one process per GPU, Lightning's DDP on top.
#
#   once, this template into cluster/: zoo recipes copy cluster/torchrun.sh .
#   single node, 4 GPUs:   NPROC=4 cluster/torchrun.sh --config <recipe>
#   fine-tune from the registry (not --ckpt_path, which resumes a run):
#                          cluster/torchrun.sh --config <recipe> --model.pretrained <name>
#   two nodes: run on each node with NNODES=2 NODE_RANK=<0|1> MASTER_ADDR=<node 0's address>
#
# Only the first process of each node downloads a registry model; the others wait for it and read
# the Hugging Face cache. Without internet, serve the models on the cluster (`zoo hub serve` on one
# machine) and export HF_ENDPOINT=http://<that machine>:8090 here, or share a pre-filled HF_HUB_CACHE.
set -euo pipefail

NPROC=${NPROC:-$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}

# torchrun sets RANK, LOCAL_RANK and WORLD_SIZE, which Lightning's TorchElasticEnvironment reads:
# devices and num_nodes must match what torchrun launched.
exec torchrun \
    --nproc_per_node="$NPROC" --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \
    --no-python zoo fit \
    --trainer.strategy ddp --trainer.devices "$NPROC" --trainer.num_nodes "$NNODES" \
    "$@"

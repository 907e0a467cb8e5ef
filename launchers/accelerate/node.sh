#!/bin/bash
# One node of a tuneforge run under `accelerate launch`, rendered from launchers/accelerate/node.sh by
# tuneforge.launch.accelerate into the run directory as launch.sh. `tuneforge train` runs it for its own node;
# on a cluster without Slurm, start it on every node with that node's rank (0 = the main node):
#   bash {{run_dir}}/launch.sh <node_rank>        # {{num_nodes}} node(s): rank 0..{{num_nodes}}-1
# It runs exactly the command `tuneforge plan` printed for that node.
set -euo pipefail
NODE_RANK=${1:-${NODE_RANK:-0}}
if ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || (( NODE_RANK >= {{num_nodes}} )); then
  echo "launch.sh: node rank '$NODE_RANK' is not in 0..$(( {{num_nodes}} - 1 ))" >&2
  exit 2
fi
RUN_DIR={{run_dir}}
if [[ ! -f "$RUN_DIR/config.yaml" ]]; then
  echo "launch.sh: $RUN_DIR/config.yaml not found: is the run directory on a filesystem this node shares?" >&2
  exit 2
fi
cd {{project_root}}
{{exports}}
exec {{command}}

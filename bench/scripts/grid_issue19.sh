#!/usr/bin/env bash
# The measurements behind docs/results.md "The whole grid" (issue 19): the four text encoders'
# word features of T15 and T17 (MPNet also with captions and knowledge, as the main job and
# docs/knowledge.md make them), then `bench heads --all` timed with /usr/bin/time -v, with
# successive halving and exact. Nothing else should run beside it: the times are the point.
# Usage: bash bench/scripts/grid_issue19.sh [features|widths|halving|exact|all] [runs prefix]
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
runs=${2:-runs/issue19}
bin=.venv/bin
export MNER_DATA_DIR=${MNER_DATA_DIR:-../shared/data}
timed() { /usr/bin/time -v "$@" 2> >(tee -a "$runs.time.log" >&2); }
mkdir -p "$(dirname "$runs")"
if [[ $what == features || $what == all ]]; then
  for d in t17 t15; do
    timed $bin/featurize $d --text minilm,e5,llama
    timed $bin/featurize $d --text mpnet --context captions,knowledge
  done
fi
if [[ $what == widths || $what == all ]]; then
  # per encoder width: every head on each encoder's text-only features, T17, one seed
  timed $bin/bench heads --dataset t17 --text minilm,mpnet,e5,llama --vision none --context none \
    --seeds 1 --runs "$runs-widths"
fi
if [[ $what == halving || $what == all ]]; then
  timed $bin/bench heads --all --halving --runs "$runs-halving"
fi
if [[ $what == exact || $what == all ]]; then
  timed $bin/bench heads --all --runs "$runs-exact"
fi

#!/usr/bin/env bash
# The measurements behind the README's "Heads" tables (issue 4): every fusion head against its
# own text-only variant on the same seeds (T17; COMPARE_DATASETS="t17 t15" for both), then the best frozen-feature configuration chosen
# on dev, three seeds each, on T17 and T15. Two runs at a time, one torch thread each (the
# fastest use of this 2-core machine, README). Needs the caches of the README's featurize
# commands. Usage: bash bench/scripts/heads_issue4.sh [compare|best|all] [runs folder]
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
runs=${2:-runs/issue4}
heads=${HEADS:-.venv/bin/heads}
jobs=()
add() { jobs+=("$*"); }
if [[ $what == compare || $what == all ]]; then
  for d in ${COMPARE_DATASETS:-t17}; do
    # Each fusion head next to its own text-only variant, seed by seed; the extra heads after.
    for s in 0 1 2; do
      common="--dataset $d --text minilm --seed $s --epochs 15 --patience 3"
      add "$common --head linear --vision cnn --out $runs/compare/$d-linear-cnn-s$s"
      add "$common --head linear --modality text --out $runs/compare/$d-linear-text-s$s"
      add "$common --head cross-attention --vision vit --out $runs/compare/$d-xattn-vit-s$s"
      add "$common --head cross-attention --modality text --out $runs/compare/$d-xattn-text-s$s"
      add "$common --head partial --vision cnn --out $runs/compare/$d-partial-cnn-s$s"
      add "$common --head partial --modality text --out $runs/compare/$d-partial-text-s$s"
      add "$common --head cwi --vision labels --out $runs/compare/$d-cwi-labels-s$s"
      add "$common --head cwi --modality text --out $runs/compare/$d-cwi-text-s$s"
      add "$common --head msb --out $runs/compare/$d-msb-none-s$s"
      add "$common --head msb --context captions --out $runs/compare/$d-msb-captions-s$s"
      add "$common --head msb --context labels --out $runs/compare/$d-msb-labels-s$s"
      add "$common --head bilstm-crf --out $runs/compare/$d-bilstmcrf-none-s$s"
      add "$common --head bilstm-crf --context captions --out $runs/compare/$d-bilstmcrf-captions-s$s"
    done
    for s in 0 1 2; do
      common="--dataset $d --text minilm --seed $s --epochs 15 --patience 3"
      add "$common --head cwi-attention --vision labels --out $runs/compare/$d-cwiattn-labels-s$s"
      add "$common --head cwi-attention --modality text --out $runs/compare/$d-cwiattn-text-s$s"
      add "--dataset $d --text none --seed $s --epochs 15 --patience 3 --head bilstm --out $runs/compare/$d-bilstm-words-s$s"
      add "--dataset $d --text none --seed $s --epochs 15 --patience 3 --head bilstm --vision cnn --modality both --out $runs/compare/$d-bilstm-words-cnn-s$s"
    done
  done
fi
if [[ $what == best || $what == all ]]; then
  for d in t17 t15; do
    for s in 0 1 2; do
      add "--dataset $d --text mpnet --pooling first --head cwi --modality text --seed $s --out $runs/best/$d-cwi-mpnet-s$s"
    done
  done
fi
printf '%s\n' "${jobs[@]}" | while read -r line; do
  out=$(sed -E 's/.*--out ([^ ]+).*/\1/' <<<"$line")
  [[ -f $out/run.json ]] && continue  # finished earlier: resumable
  echo "$line"
done | xargs -P 2 -I{} sh -c "mkdir -p $runs/logs; $heads train {} > $runs/logs/\$(echo '{}' | sed -E 's/.*--out [^ ]*\/([^ /]+).*/\1/').log 2>&1 || echo 'failed: {}'"
$heads report "$runs" --out "$runs/reports"

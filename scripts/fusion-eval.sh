#!/usr/bin/env bash
# Regenerates the README's "Logit fusion and hand-off" table and plot: the Qwen pair alone,
# contrastive decoding at two alphas and the uncertainty hand-off at three thresholds
# (configs/fusion.toml), greedy, on HumanEval and GSM-symbolic (the `boxed` prompt), through the
# evaluation harness. Resumable: run it again after an interruption.
#
#   scripts/fusion-eval.sh                       # everything (hours on a laptop CPU)
#   LIMIT=30 DATASETS=humaneval scripts/fusion-eval.sh   # the README's subset
#
# LIMIT: only the first N items of each dataset. DATASETS: `humaneval`, `gsm-symbolic:boxed`
# (dataset:prompt). TANDEM_EVAL_DB: the outcome store (default: ~/.cache/tandem/eval/
# outcomes.sqlite, whose qwen-coder-0.5b/1.5b outcomes scripts/baselines.sh also fills).
# TANDEM_BIN: a built tandem binary (default: build the release one). OUT: where the table
# (fusion.md) and the plots (fusion-quality-vs-large-share-DATASET.svg) go.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-}
DATASETS=${DATASETS:-"humaneval gsm-symbolic:boxed"}
OUT=${OUT:-eval-fusion}
DB=${TANDEM_EVAL_DB:-$HOME/.cache/tandem/eval/outcomes.sqlite}
BIN=${TANDEM_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release -q --workspace
    BIN=target/release/tandem
fi
MODELS="qwen-coder-1.5b qwen-coder-0.5b handoff-p0.6 contrastive-a0.5 handoff-p0.95 handoff-p0.8 contrastive-a1.0"
limit=()
[ -n "$LIMIT" ] && limit=(--limit "$LIMIT")
for spec in $DATASETS; do
    dataset=${spec%%:*}
    prompt=()
    [ "$spec" != "$dataset" ] && prompt=(--prompt "${spec#*:}")
    for model in $MODELS; do
        "$BIN" --config configs/fusion.toml eval run --db "$DB" --dataset "$dataset" "${prompt[@]}" \
            --model "$model" --max-tokens 512 --concurrency 4 --quiet "${limit[@]}"
    done
done
mkdir -p "$OUT"
python3 scripts/fusion-table.py --db "$DB" --out "$OUT" $MODELS

#!/usr/bin/env bash
# Regenerates the README's routing table and plots: both models of the Qwen pair on every
# HumanEval task and on both splits of GSM-symbolic (`boxed` prompt), then every routing score
# measured on held-out items by `tandem router evaluate`. Resumable: outcomes already stored are
# not generated again. Writes docs/routing/<dataset>/ (report.md, scores.json, PNG and SVG plots).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tandem
tandem() { target/release/tandem --config configs/routing.toml "$@"; }
datasets=${DATASETS:-"humaneval gsm-symbolic"}
for dataset in $datasets; do
    prompt=()
    split=()
    if [ "$dataset" = gsm-symbolic ]; then prompt=(--prompt boxed); split=(--split all); fi
    for model in qwen-coder-0.5b qwen-coder-1.5b; do
        tandem eval run --dataset "$dataset" "${prompt[@]}" "${split[@]}" --model "$model" \
            --max-tokens 512 --concurrency 4 --quiet
    done
    tandem router evaluate --dataset "$dataset" "${prompt[@]}" \
        --small qwen-coder-0.5b --large qwen-coder-1.5b --out "docs/routing/$dataset"
done

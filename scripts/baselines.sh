#!/usr/bin/env bash
# Regenerates the README's baselines: four local models, greedy, on all 164 HumanEval tasks and on
# the GSM-symbolic test split. Resumable: run it again after an interruption. Writes eval-report/
# (report.md is the README's table).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tandem
tandem() { target/release/tandem --config configs/baselines.toml "$@"; }
for dataset in humaneval gsm-symbolic; do
    for model in smollm2 qwen-coder-0.5b gemma3-270m qwen-coder-1.5b; do
        tandem eval run --dataset "$dataset" --model "$model" --max-tokens 512 --concurrency 4
    done
done
# GSM-symbolic asked reasoning-first (\boxed{}), beside the default prompt, for the Qwen pair
# (the SLM and LLM of the collaboration tests).
for model in qwen-coder-0.5b qwen-coder-1.5b; do
    tandem eval run --dataset gsm-symbolic --prompt boxed --model "$model" --max-tokens 512 --concurrency 4
done
tandem eval report --out eval-report

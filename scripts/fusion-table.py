#!/usr/bin/env python3
"""The "Logit fusion and hand-off" table and plot from the evaluation harness's outcome store.

Usage: fusion-table.py --db STORE --out DIR MODEL...

For each dataset (and prompt), a first table counts only the items every named model that has
outcomes answered, so its rows compare like with like (the plot shows it); a second counts each
row over every item it answered. Per model: pass rate with its 95% Wilson interval, the share of
answer tokens the large model chose (from each response's `tandem` report; 1 for the large model
alone, 0 for the small one), hand-offs per item, tokens per second per request (completion
tokens over generation time, at the run's concurrency) and mean answer length. Writes
DIR/fusion.md and DIR/fusion-quality-vs-large-share-DATASET.svg. Standard library only.
"""

import argparse
import json
import math
import os
import sqlite3
import sys

LARGE_ALONE = "qwen-coder-1.5b"


def wilson(passed, n, z=1.96):
    if n == 0:
        return (0.0, 0.0)
    p = passed / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


def latest_runs(db, models):
    """(model, dataset, prompt) -> settings_hash of the newest run."""
    runs = {}
    for settings_hash, model, dataset, settings, created in db.execute(
        "SELECT settings_hash, model, dataset, settings, created_at FROM runs ORDER BY created_at"
    ):
        if model not in models:
            continue
        prompt = json.loads(settings)["settings"].get("prompt_version", "")
        runs[(model, dataset, prompt)] = settings_hash
    return runs


def share_of(model, report, tokens):
    if model == LARGE_ALONE:
        return tokens, 0.0
    try:
        entry = json.loads(report)["strategies"][0]
    except (TypeError, ValueError, KeyError, IndexError):
        return 0.0, 0.0
    return float(entry.get("tokens_from_large", 0)), float(entry.get("handoffs", 0))


def table(lines, outcomes, items):
    """Appends one Markdown row per model over `items[model]`; returns the plot's points."""
    lines.append(
        "| model or pipeline | pass@1 | 95% interval | large-token share | hand-offs / item "
        "| tok/s per request | mean tokens |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    points = []
    for model, rows in outcomes.items():
        picked = [rows[i] for i in sorted(items[model])]
        n = len(picked)
        passed = sum(r[0] for r in picked)
        tokens = sum(r[1] for r in picked)
        gen_s = sum(r[2] for r in picked) / 1000
        large = handoffs = 0.0
        for r in picked:
            lt, h = share_of(model, r[3], r[1])
            large += lt
            handoffs += h
        share = large / tokens if tokens else 0.0
        low, high = wilson(passed, n)
        rate = tokens / gen_s if gen_s else 0.0
        lines.append(
            f"| {model} | {passed / max(n, 1):.1%} ({passed}/{n}) | {low:.1%} - {high:.1%} "
            f"| {share:.1%} | {handoffs / max(n, 1):.1f} | {rate:.1f} | {tokens / max(n, 1):.0f} |"
        )
        points.append((model, share, passed / max(n, 1), low, high))
    return points


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    db = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    runs = latest_runs(db, set(args.models))
    groups = sorted({(d, p) for (_, d, p) in runs})
    lines = []
    for dataset, prompt in groups:
        outcomes = {}
        for model in args.models:
            settings_hash = runs.get((model, dataset, prompt))
            if settings_hash is None:
                continue
            outcomes[model] = {
                item: row
                for (item, *row) in db.execute(
                    "SELECT item_id, passed, completion_tokens, gen_ms, report, error "
                    "FROM outcomes WHERE settings_hash = ?",
                    (settings_hash,),
                )
            }
        outcomes = {m: o for m, o in outcomes.items() if o}
        if not outcomes:
            continue
        ok = {m: {i for i, r in o.items() if r[4] is None} for m, o in outcomes.items()}
        common = set.intersection(*ok.values())
        lines.append(f"\n### {dataset} ({prompt}): the {len(common)} items every row answered\n")
        points = table(lines, outcomes, {m: common for m in outcomes})
        lines.append(f"\n### {dataset} ({prompt}): each row over every item it answered\n")
        table(lines, outcomes, ok)
        missing = [m for m in args.models if m not in outcomes]
        if missing:
            lines.append(f"\nNot run yet: {', '.join(missing)}.")
        plot(points, f"{dataset} ({prompt}), {len(common)} items",
             os.path.join(args.out, f"fusion-quality-vs-large-share-{dataset}.svg"))
    text = "\n".join(lines).lstrip() + "\n"
    with open(os.path.join(args.out, "fusion.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


def plot(points, title, path):
    """Pass rate (with its interval) against the large model's token share, as an SVG."""
    w, h, m = 720, 480, 70
    x = lambda v: m + v * (w - 2 * m)
    y = lambda v: h - m - v * (h - 2 * m)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="24" text-anchor="middle" font-size="14">{title}</text>',
        f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
        f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 25}" text-anchor="middle">share of answer tokens chosen by the large model</text>',
        f'<text x="20" y="{h / 2}" text-anchor="middle" transform="rotate(-90 20 {h / 2})">pass@1 (95% interval)</text>',
    ]
    for t in range(0, 11, 2):
        v = t / 10
        out.append(f'<text x="{x(v)}" y="{h - m + 16}" text-anchor="middle">{v:.0%}</text>')
        out.append(f'<text x="{m - 8}" y="{y(v) + 4}" text-anchor="end">{v:.0%}</text>')
        out.append(f'<line x1="{m}" y1="{y(v)}" x2="{w - m}" y2="{y(v)}" stroke="#ddd"/>')
    for model, share, p, low, high in points:
        cx = x(share)
        out.append(f'<line x1="{cx}" y1="{y(low)}" x2="{cx}" y2="{y(high)}" stroke="#36c"/>')
        out.append(f'<circle cx="{cx}" cy="{y(p)}" r="4" fill="#36c"/>')
        out.append(f'<text x="{cx + 6}" y="{y(p) - 6}">{model}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

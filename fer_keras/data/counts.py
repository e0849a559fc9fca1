"""Class counts of a dataset under every label preset (7, 5, 4, 2), per split, and per fold for DFEW.

    python -m fer_keras.data.counts --data /data/DFEW [--fold F] [--out counts/]

Prints one table per fold and writes `class_counts.csv` and `class_counts.md` to --out (default: the current
folder's `counts/`).
"""

from __future__ import annotations

from typing import Dict, List, Optional

from fer_keras.config import DataConfig
from fer_keras.data.formats import BadLog, detect_format, read_table
from fer_keras.labels import map_name, preset_classes


def count_table(names_by_split: Dict[str, List[str]], presets=("7", "5", "4", "2")) -> List[dict]:
    """Rows (preset, split, class, count) from canonical names per split; classes a preset drops are skipped."""
    rows = []
    for preset in presets:
        classes = preset_classes(preset)
        for split, names in names_by_split.items():
            counts = {c: 0 for c in classes}
            for n in names:
                j = map_name(n, preset)
                if j is not None:
                    counts[classes[j]] += 1
            rows += [{"preset": preset, "split": split, "class": c, "count": k} for c, k in counts.items()]
    return rows


def dataset_counts(path: str, fmt: str = "auto", fold: Optional[int] = None) -> Dict[int, List[dict]]:
    """{fold: rows} for a dataset (folds 1-5 for DFEW unless one is given; fold 0 = the dataset's own split)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    folds = ([fold] if fold else [1, 2, 3, 4, 5]) if fmt == "dfew" else [0]
    out = {}
    for f in folds:
        cfg = DataConfig(path=path, format=fmt, fold=f or 1, skip_bad=True)
        raw = read_table(path, fmt, cfg, BadLog(skip=True))
        splits = raw.splits or ["all"] * len(raw)
        by_split: Dict[str, List[str]] = {}
        for s, n in zip(splits, raw.names):
            by_split.setdefault(s or "unassigned", []).append(n)
        out[f] = count_table(by_split)
    return out


def markdown(rows: List[dict]) -> str:
    """One table: rows = preset/class, columns = splits."""
    splits = sorted({r["split"] for r in rows})
    lines = ["| preset | class | " + " | ".join(splits) + " |", "|---|---|" + "---|" * len(splits)]
    keys = []
    for r in rows:
        if (r["preset"], r["class"]) not in keys:
            keys.append((r["preset"], r["class"]))
    for p, c in keys:
        vals = [next((r["count"] for r in rows if (r["preset"], r["class"], r["split"]) == (p, c, s)), 0)
                for s in splits]
        lines.append(f"| {p} | {c} | " + " | ".join(map(str, vals)) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # `python -m fer_keras.data.counts` runs the CLI, cli_counts.py (no import back to it)
    import runpy

    runpy.run_module("fer_keras.cli_counts", run_name="__main__")

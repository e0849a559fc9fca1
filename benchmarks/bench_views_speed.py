"""Classification speed of the shipped models per test-time view set: faces/s at batch 64 through `FacePredictor`
(LiteRT where the model ships a `.tflite`, as predict runs it), medians of repeated timings.

    python benchmarks/bench_views_speed.py [--models default compact fer2013] [--tta none flip crops] [--repeats 5]

Crops are prepared generated faces (speed does not depend on the content; no dataset needed). Decoding and detection
are excluded: this is the "faces/s at batch 64" of the model cards and of issue 38's >= 300 faces/s floor.
Writes benchmarks/results/views_speed.json (a new file per --out) and prints a Markdown table. Run it on a quiet
CPU: a training beside it halves the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def faces_per_s(model: str, tta: str, n: int = 512, batch: int = 64, repeats: int = 5) -> float:
    """Median faces/s of `FacePredictor(model, batch, tta=tta).predict` over `n` prepared crops."""
    from fer_keras.data.demo import generate
    from fer_keras.predict import FacePredictor

    p = FacePredictor(model, batch, tta=tta)
    faces = generate(max(1, n // 8), 96, seed=0)["images"][:n]
    crops = [p.prepare(f) for f in faces]
    p.predict(crops[:batch])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p.predict(crops)
        times.append(time.perf_counter() - t0)
    return len(crops) / statistics.median(times)


def main(argv=None) -> dict:
    from fer_keras.pretrained import SHIPPED_MODELS, resolve_model
    from fer_keras.tta import TTA

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=SHIPPED_MODELS.names(),
                    help="shipped names, .keras/.tflite files or run folders")
    ap.add_argument("--tta", nargs="+", default=list(TTA), choices=list(TTA))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "views_speed.json"))
    a = ap.parse_args(argv)
    res = {"command": "python benchmarks/bench_views_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "faces_per_s": {}}
    print("| model | " + " | ".join(f"`{t}` faces/s" for t in a.tta) + " |")
    print("|---|" + "---|" * len(a.tta))
    for m in a.models:
        row = {t: round(faces_per_s(resolve_model(m), t, repeats=a.repeats), 1) for t in a.tta}
        res["faces_per_s"][m] = row
        print(f"| {m} | " + " | ".join(f"{row[t]:.0f}" for t in a.tta) + " |", flush=True)
    from fer_keras.io_utils import atomic_write_text

    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()

"""Section 3: bounded memory when training on 200k images (streamed folder and TFRecords vs the in-memory cache)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time

from suite.common import BENCH_DATA, PeakRSS, run_json


# === 3. Bounded memory on 200k images ===

def _write_many(n: int) -> str:
    """`n` generated 48 px grayscale faces as PNGs in class folders, written once (then reused).

    2,000 demo faces are drawn, and every file is one of them shifted, flipped and noised: cheap to make (tens of
    seconds, streamed to disk, never all in memory) and still n distinct files for the pipeline to decode.
    """
    import cv2
    import numpy as np

    from fer_keras.data.demo import CANONICAL, draw_face

    root = os.path.join(BENCH_DATA, f"faces-{n}-48")
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    rng = np.random.default_rng(2)
    labels = [CANONICAL[i % len(CANONICAL)] for i in range(2000)]
    bases = [cv2.cvtColor(draw_face(lab, rng, 56)[0], cv2.COLOR_RGB2GRAY) for lab in labels]
    for lab in set(labels):
        os.makedirs(os.path.join(root, lab), exist_ok=True)
    for i in range(n):
        k = int(rng.integers(0, len(bases)))
        y, x = rng.integers(0, 9, 2)
        img = bases[k][y:y + 48, x:x + 48]
        img = img[:, ::-1] if rng.random() < 0.5 else img
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(root, labels[k], f"{i:06d}.png"), img)
    open(os.path.join(root, ".complete"), "w").close()
    return root


def worker_memory(source: str, path: str, budget_mb: int) -> dict:
    from fer_keras.config import load_config
    from fer_keras.expression.train import train

    with PeakRSS() as rss:
        t0 = time.perf_counter()
        cfg = load_config(None, [f"data.path={path}", "data.image_size=48", "data.channels=1",
                                 "data.batch_size=128", f"data.cache_budget_mb={budget_mb}",
                                 # full validation decodes every file, and keeps the pixels when they fit
                                 f"data.validate_images={'full' if budget_mb > 1024 else 'header'}",
                                 "data.val_fraction=0.02", "data.test_fraction=0",
                                 "model.widths=[16,32]", "model.blocks=[1,1]", "model.head_units=32",
                                 "train.epochs=1", "train.tensorboard=false",
                                 f"train.runs_dir={tempfile.mkdtemp(prefix='fer-bench-')}"])
        run = train(cfg)
        wall = time.perf_counter() - t0
    with open(os.path.join(run, "runtime.json")) as f:
        rt = json.load(f)
    with open(os.path.join(run, "data_summary.json")) as f:
        n = json.load(f)["splits"]["train"]["samples"]
    return {"source": source, "budget_mb": budget_mb, "train_samples": n, "peak_rss_mb": rss.peak / 2 ** 20,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "wall_s": wall,
            "train_img_s": rt["train_images_per_second"]}


def bench_memory(a) -> dict:
    from fer_keras.config import load_config
    from fer_keras.data.prepare import prepare
    from fer_keras.errors import DataError

    n = a.memory_images
    t0 = time.perf_counter()
    folder = _write_many(n)
    gen_s = time.perf_counter() - t0
    shards = os.path.join(BENCH_DATA, f"shards-{n}-48")
    t0 = time.perf_counter()
    cfg = load_config(None, [f"data.path={folder}", "data.image_size=48", "data.channels=1",
                             "data.val_fraction=0.02", "data.test_fraction=0", "data.validate_images=header"])
    try:
        prepare(cfg, shards, shard_size=4096, log_fn=lambda *_: None)
    except DataError as e:  # this benchmark's own cache, prepared by an older plan: rebuild it
        print(f"rebuilding {shards}: {e}", flush=True)
        shutil.rmtree(shards)
        prepare(cfg, shards, shard_size=4096, log_fn=lambda *_: None)
    prep_s = time.perf_counter() - t0
    rows = []
    for source, p, budget in (("image folder, streamed", folder, 64), ("TFRecords, streamed", shards, 64),
                              ("image folder, in-memory cache", folder, 4096)):
        r = run_json(["--worker", "memory", source, p, str(budget)], timeout=3600)
        r["command"] = f"python benchmarks/run_all.py --worker memory '{source}' {p} {budget}"
        rows.append(r)
        print(f"memory {source}: peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    return {"images": n, "generate_seconds": gen_s, "prepare_seconds": prep_s, "rows": rows,
            "raw_bytes_mb": n * 48 * 48 / 2 ** 20}

"""Section 2: input-pipeline efficiency (JPEG folders and TFRecords streamed, against in-memory tensors)."""

from __future__ import annotations

import os
import statistics
import time

from suite.common import BENCH_DATA, FER2013, ROOT, interleaved_epochs, run_json


# === 2. Input-pipeline efficiency ===

def _pipeline_source(a) -> tuple:
    """(dataset path, description): FER2013's train split when present, else a generated 48 px face folder."""
    if os.path.isdir(os.path.join(FER2013, "train")):
        return os.path.join(FER2013, "train"), "FER2013 train/ JPEGs (28,709 files)"
    from fer_keras.data.demo import write_demo

    path = write_demo(os.path.join(BENCH_DATA, "faces-48"), "folder", per_class=1000, size=48, seed=1)
    return path, "generated 48 px face folder (8,000 PNGs)"


def worker_pipeline(path: str, shards: str, steps: int, repeats: int, *extra: str) -> dict:
    """One model fed from three sources in interleaved rounds (memory, JPEG folder, TFRecords)."""
    from fer_keras.config import load_config
    from fer_keras.data.pipeline import load_data, make_dataset
    from fer_keras.models import build_model
    from fer_keras.expression.train import compile_model

    base = ["data.image_size=48", "data.channels=1", "data.batch_size=64", "data.val_fraction=0",
            "data.test_fraction=0", "data.validate_images=none"]
    sources = {"memory": [f"data.path={path}", "data.validate_images=full"],  # full: decodes into memory
               "jpeg_folder": [f"data.path={path}", "data.cache=none"],
               "tfrecord": [f"data.path={shards}", "data.cache=none"]}
    datasets, info, model = {}, {}, None
    for name, sets in sources.items():
        cfg = load_config(os.path.join(ROOT, "configs", "fer2013.yaml"), base + sets + list(extra))
        t0 = time.perf_counter()
        data = load_data(cfg.data)
        info[name] = {"load_s": time.perf_counter() - t0, "samples": len(data.train),
                      "in_memory": data.train.images is not None}
        if model is None:
            model = build_model(cfg.model, len(data.class_names), (48, 48, 1))
            compile_model(model, cfg, len(data.class_names), schedule_steps=1000)
        datasets[name] = make_dataset(data.train, cfg, training=True).repeat()
        model.fit(datasets[name], steps_per_epoch=steps, epochs=1, verbose=0)  # warm-up (autotune, file cache)
    times = interleaved_epochs({k: (model, ds) for k, ds in datasets.items()}, steps, repeats)
    return {k: {**info[k], "img_s": steps * 64 / statistics.median(v), "img_s_all": [steps * 64 / t for t in v]}
            for k, v in times.items()}


def bench_pipeline(a) -> dict:
    path, desc = _pipeline_source(a)
    shards = os.path.join(BENCH_DATA, "pipeline-shards-48")
    from fer_keras.config import load_config
    from fer_keras.data.prepare import prepare

    cfg = load_config(None, [f"data.path={path}", "data.image_size=48", "data.channels=1", "data.val_fraction=0",
                             "data.test_fraction=0"])
    t0 = time.perf_counter()
    prepare(cfg, shards, log_fn=lambda *_: None)
    prep_s = time.perf_counter() - t0
    steps = max(10, 60 * a.scale // 100)
    res = run_json(["--worker", "pipeline", path, shards, str(steps), str(a.repeats), *a.pipeline_set])
    for k, v in res.items():
        print(f"pipeline {k}: {v['img_s']:.1f} img/s", flush=True)
    base = res["memory"]["img_s"]
    return {"data": desc, "prepare_seconds": prep_s, "steps": steps, "repeats": a.repeats, "results": res,
            "efficiency": {k: v["img_s"] / base for k, v in res.items() if k != "memory"},
            "overrides": a.pipeline_set, "command": "python benchmarks/run_all.py --only pipeline" + (
                " --pipeline-set " + " ".join(a.pipeline_set) if a.pipeline_set else "")}

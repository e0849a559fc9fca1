"""The benchmark suite: one command, results in `benchmarks/RESULTS.md`.

    python benchmarks/run_all.py                       # every section (about 40 min on the 2-core CPU)
    python benchmarks/run_all.py --only training,inference --repeats 3

Sections (each writes `benchmarks/results/<section>.json` as soon as it finishes, so an interrupted run keeps what
it measured; RESULTS.md is rendered from whatever JSON is there, with the machine, versions and date of each):

1. `training`: training images/s of every registered image model at its CPU config size (configs/<model>.yaml,
   random weights, synthetic in-memory batches of 32) for XLA off/on x float32/bfloat16, and whether the `auto`
   defaults pick a setting within 5% of the best one.
2. `pipeline`: input-pipeline efficiency of CustomCNN at 48 px: fit images/s from on-disk JPEG folders (streamed,
   decoded every epoch) and from prepared TFRecords (streamed), each divided by fit images/s from in-memory tensors
   through the same augmentation. Real FER2013 JPEGs when ../shared/data/fer2013 exists, else generated faces.
3. `memory`: training on 200,000 generated 48 px images: peak RSS when streaming from an image folder and from
   TFRecords (cache budget 64 MB) next to the in-memory cache.
4. `inference`: the shipped model exported as SavedModel and TFLite: per-face latency (batch 1), throughput
   (batch 64); end-to-end images/s of the predict CLI on a folder of 640x480 photos with detection (BlazeFace, the
   default, and Haar), next to the `fer` package (Haar + mini-Xception) on the same photos in the same run, each
   scored against the photos' known face positions and expression labels.
5. `time_to_accuracy`: from the FER2013 run's own history (`--fer-run`, default runs/fer2013-v7): wall time
   until the validation accuracy first reached 55/60/63/65/66/68%.
7. `backbones`: every registered image model at 64 px: training img/s in float32 and mixed_bfloat16 (XLA off),
   parameters, and whether `precision=auto` picks the faster (README "Models" table).
6. `detection`: the RetinaNet face detector (configs/darkface_retinanet.yaml) trained on generated dark scenes for
   at most `--det-minutes`; AP on held-out generated scenes at 320x240 and 640x480; per-image latency at 640x480.

Medians of `--repeats` timed repeats after a warm-up; each training cell runs in a fresh subprocess so that the
precision policy and XLA state of one cell cannot leak into the next.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
FER2013 = os.path.join(ROOT, "..", "shared", "data", "fer2013")
BENCH_DATA = os.path.join(ROOT, "data", "bench")
SECTIONS = ("training", "pipeline", "memory", "inference", "time_to_accuracy", "detection", "backbones")
TRAIN_MODELS = ("CustomCNN", "VGG16", "ResNet50", "EfficientNetB0")
sys.path.insert(0, ROOT)


# === Helpers ===

def machine() -> dict:
    import keras
    import tensorflow as tf

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def save(section: str, payload: dict) -> None:
    from fer_keras.io_utils import atomic_write_text

    payload = {"section": section, "machine": machine(), **payload}
    atomic_write_text(os.path.join(RESULTS_DIR, f"{section}.json"), json.dumps(payload, indent=1))


def run_json(args, timeout=1800) -> dict:
    """Runs `python benchmarks/run_all.py --worker ...` and returns the JSON of its last stdout line."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"worker {args} failed (rc {out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1])


class PeakRSS:
    """Samples this process' resident memory every 50 ms (ru_maxrss also counts the import-time peak)."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            with open("/proc/self/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(ln.split()[1]) * 1024)
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


class EpochTimer:
    """A Keras callback factory recording each epoch's wall time."""

    @staticmethod
    def make():
        import keras

        class _T(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._t)

        return _T()


def interleaved_epochs(cases: dict, steps: int, repeats: int) -> dict:
    """Times `repeats` rounds of one `steps`-step epoch per case (name -> (model, dataset)), round-robin.

    Round-robin (A B C, A B C, ...) rather than one case after another, so that slow drifts of this shared VM's
    speed (seen: +-30% over minutes) spread over every case instead of deciding the ranking.
    """
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, (model, ds) in cases.items():
            timer = EpochTimer.make()
            model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
            times[k].append(timer.times[0])
    return times


# === 1. Training throughput per model, XLA x precision ===

SETTINGS = [("off", "float32"), ("off", "mixed_bfloat16"), ("on", "float32"), ("on", "mixed_bfloat16")]


def worker_train(model_name: str, steps: int, repeats: int, size: str = "", settings: str = "all") -> dict:
    """All four XLA x precision settings of one model in one process, timed in interleaved rounds.

    Timing one setting after another let slow drifts of this shared VM's speed (seen: +-30% over minutes) decide
    the ranking; round-robin epochs (A B C D, A B C D, ...) and per-setting medians cancel most of that.
    `size` overrides the config's image size; `settings="xla_off"` times only float32 and bfloat16 without XLA
    (XLA is measured 3-7x slower for training on this CPU). A model without configs/<name>.yaml uses the defaults.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from fer_keras.config import load_config
    from fer_keras.models import build_model
    from fer_keras.training import compile_model

    path = os.path.join(ROOT, "configs", f"{model_name.lower()}.yaml")
    cfg = load_config(path if os.path.isfile(path) else None, ["model.weights=none", f"model.name={model_name}"])
    size, batch = int(size) if size else cfg.data.image_size, 32
    settings_list = SETTINGS if settings == "all" else [s for s in SETTINGS if s[0] == "off"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * 8, size, size, 3)).astype(np.float32)
    y = {"expression": rng.integers(0, 7, batch * 8).astype(np.int32),
         "valence_arousal": rng.uniform(-1, 1, (batch * 8, 2)).astype(np.float32)}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().repeat()
    models = {}
    for xla, precision in settings_list:
        keras.mixed_precision.set_global_policy(precision)  # captured by the layers built now
        m = build_model(cfg.model, 7, (size, size, 3))
        compile_model(m, cfg, 7, schedule_steps=1000, jit_compile=xla == "on")
        m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # warm-up: tracing, XLA compilation
        models[(xla, precision)] = m
    keras.mixed_precision.set_global_policy("float32")
    times = interleaved_epochs({k: (m, ds) for k, m in models.items()}, steps, repeats)
    params = models[settings_list[0]].count_params()
    return {"cells": [{"model": model_name, "size": size, "xla": xla, "precision": prec, "params": params,
                       "img_s": steps * batch / statistics.median(times[(xla, prec)]),
                       "img_s_all": [steps * batch / t for t in times[(xla, prec)]]}
                      for xla, prec in settings_list]}


def bench_training(a) -> dict:
    from fer_keras.config import load_config
    from fer_keras.training import resolve_runtime

    steps = {"CustomCNN": 30, "VGG16": 10, "ResNet50": 6, "EfficientNetB0": 8}  # ~3-6 s per plain epoch here
    rows, verdicts = [], []
    for m in a.models.split(","):
        n = max(3, steps[m] * a.scale // 100)
        cells = run_json(["--worker", "train", m, str(n), str(a.repeats)])["cells"]
        for c in cells:
            c["command"] = f"python benchmarks/run_all.py --worker train {m} {n} {a.repeats}"
            print(f"training {m} xla={c['xla']} {c['precision']}: {c['img_s']:.1f} img/s", flush=True)
        rows.extend(cells)
        cfg = load_config(os.path.join(ROOT, "configs", f"{m.lower()}.yaml"))
        auto = resolve_runtime(cfg.train, m)
        chosen = next(c for c in cells if (c["xla"] == "on") == auto["xla"] and c["precision"] == auto["precision"])
        best = max(cells, key=lambda c: c["img_s"])
        verdicts.append({"model": m, "auto_xla": auto["xla"], "auto_precision": auto["precision"],
                         "auto_img_s": chosen["img_s"], "best": f"xla={best['xla']} {best['precision']}",
                         "best_img_s": best["img_s"], "ratio": chosen["img_s"] / best["img_s"],
                         "within_5pct": chosen["img_s"] >= 0.95 * best["img_s"],
                         "measured": _dt.datetime.now().isoformat(timespec="minutes")})
    # Models not measured this time keep their earlier rows (each verdict says when it was measured).
    old_path = os.path.join(RESULTS_DIR, "training.json")
    if os.path.isfile(old_path):
        with open(old_path) as f:
            old = json.load(f)
        done = set(a.models.split(","))
        rows += [r for r in old["rows"] if r["model"] not in done]
        verdicts += [dict(v, measured=v.get("measured", old["machine"]["date"][:16])) for v in old["auto"]
                     if v["model"] not in done]
    return {"rows": rows, "auto": verdicts, "repeats": a.repeats}


# === 1b. Every registered image backbone at 64 px ===

BACKBONE_SIZE = 64


def bench_backbones(a) -> dict:
    """Training img/s of every registered image model at 64 px (batch 32, synthetic in-memory data, XLA off),
    float32 vs mixed_bfloat16, and whether `precision=auto` picks the faster one."""
    from fer_keras.config import Config
    from fer_keras.models import MODELS
    from fer_keras.training import resolve_runtime

    names = [n for n in MODELS.names() if not getattr(MODELS.get(n), "temporal", False)]
    if a.models != ",".join(TRAIN_MODELS):
        names = a.models.split(",")
    rows = []
    out_path = os.path.join(RESULTS_DIR, "backbones.json")
    for m in names:
        cells = run_json(["--worker", "train", m, str(a.backbone_steps), str(a.repeats), str(BACKBONE_SIZE),
                          "xla_off"], timeout=3600)["cells"]
        by = {c["precision"]: c for c in cells}
        auto = resolve_runtime(Config().train, m)["precision"]
        best = max(cells, key=lambda c: c["img_s"])["precision"]
        rows.append({"model": m, "size": BACKBONE_SIZE, "params": cells[0]["params"],
                     "float32_img_s": by["float32"]["img_s"], "bf16_img_s": by["mixed_bfloat16"]["img_s"],
                     "auto_precision": auto, "best_precision": best,
                     "auto_within_5pct": by[auto]["img_s"] >= 0.95 * by[best]["img_s"],
                     "command": f"python benchmarks/run_all.py --worker train {m} {a.backbone_steps} {a.repeats} "
                                f"{BACKBONE_SIZE} xla_off"})
        print(f"backbone {m}: float32 {by['float32']['img_s']:.1f}, bf16 {by['mixed_bfloat16']['img_s']:.1f} img/s "
              f"(auto {auto})", flush=True)
        save("backbones", {"rows": rows, "repeats": a.repeats})  # as it goes
    return {"rows": rows, "repeats": a.repeats}


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
    from fer_keras.training import compile_model

    base = ["data.image_size=48", "data.channels=1", "data.batch_size=64", "data.val_fraction=0",
            "data.test_fraction=0", "data.validate_images=none"]
    sources = {"memory": [f"data.path={path}", "data.validate_images=full"],  # full: decodes into memory
               "jpeg_folder": [f"data.path={path}", "data.cache=none"],
               "tfrecord": [f"data.path={shards}", "data.cache=none"]}
    datasets, info, model = {}, {}, None
    for name, sets in sources.items():
        cfg = load_config(os.path.join(ROOT, "configs", "fer2013.yaml"), base + sets + list(extra))
        t0 = time.perf_counter()
        data = load_data(cfg)
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
    from fer_keras.training import train

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


# === 4. Inference ===

def _photos(n: int) -> tuple:
    """`n` 640x480 photos with one face each: FER2013 val faces (upscaled) when present, else demo faces.

    Writes `truth.csv` beside them (file, expression label, the pasted face's square x, y, size), so that both
    tools are scored on what they found and how they labelled it, not only on speed.
    """
    import cv2
    import numpy as np

    from fer_keras.labels import normalize_name

    out = os.path.join(BENCH_DATA, f"photos-640x480-{n}")
    if os.path.isfile(os.path.join(out, "truth.csv")):
        return out, open(os.path.join(out, "SOURCE.txt")).read()
    rng = np.random.default_rng(0)
    faces, labels = [], []
    val = os.path.join(FER2013, "val")
    if os.path.isdir(val):
        files = sorted(os.path.join(r, f) for r, _, fs in os.walk(val) for f in fs if f.endswith(".jpg"))
        for f in rng.choice(files, n, replace=False):
            faces.append(cv2.imread(f))
            labels.append(normalize_name(os.path.basename(os.path.dirname(f))))
        desc = "FER2013 val faces upscaled to 160-240 px, pasted on blurred-noise 640x480 backgrounds"
    else:
        from fer_keras.data.demo import CANONICAL, draw_face

        faces = [cv2.cvtColor(draw_face(CANONICAL[i % 8], rng, 128)[0], cv2.COLOR_RGB2BGR) for i in range(n)]
        labels = [normalize_name(CANONICAL[i % 8]) for i in range(n)]
        desc = "generated faces pasted on blurred-noise 640x480 backgrounds"
    os.makedirs(out, exist_ok=True)
    truth = ["file,label,x,y,size"]
    for i, face in enumerate(faces):
        bg = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3)).astype(np.uint8), (0, 0), 8)
        s = int(rng.integers(160, 241))
        f = cv2.resize(face if face.ndim == 3 else cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), (s, s),
                       interpolation=cv2.INTER_CUBIC)
        y, x = int(rng.integers(0, 480 - s)), int(rng.integers(0, 640 - s))
        bg[y:y + s, x:x + s] = f
        cv2.imwrite(os.path.join(out, f"photo_{i:04d}.jpg"), bg)
        truth.append(f"photo_{i:04d}.jpg,{labels[i]},{x},{y},{s}")
    with open(os.path.join(out, "SOURCE.txt"), "w") as fh:
        fh.write(desc)
    with open(os.path.join(out, "truth.csv"), "w") as fh:  # last: its presence marks a complete folder
        fh.write("\n".join(truth) + "\n")
    return out, desc


def score_photos(folder: str, found: dict) -> dict:
    """Scores one tool's answers on the photos: `found` maps file name -> (x, y, w, h, label) of its largest face.

    A face counts as found when the box centre lies inside the pasted face's square (the pasted FER crop includes
    some background, so IoU with it would punish tight boxes); accuracy is over the photos whose face was found.
    """
    import csv

    with open(os.path.join(folder, "truth.csv"), newline="") as f:
        truth = {r["file"]: r for r in csv.DictReader(f)}
    hit = correct = 0
    for name, t in truth.items():
        if name not in found:
            continue
        x, y, w, h, label = found[name]
        tx, ty, ts = int(t["x"]), int(t["y"]), int(t["size"])
        if tx <= x + w / 2 <= tx + ts and ty <= y + h / 2 <= ty + ts:
            hit += 1
            correct += label == t["label"]
    return {"photos": len(truth), "found": hit, "found_rate": hit / len(truth),
            "accuracy_on_found": correct / hit if hit else 0.0, "correct_per_photo": correct / len(truth)}


def _ensure_fer_package():
    try:
        from fer.fer import FER  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "fer==25.10.3",
                        "setuptools<81"], check=True)


def worker_fer_package(folder: str, repeats: int = 1) -> dict:
    import cv2

    from fer.fer import FER
    from fer_keras.labels import normalize_name

    det = FER(mtcnn=False)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    det.detect_emotions(cv2.imread(files[0]))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        answers = {f: det.detect_emotions(cv2.imread(f)) for f in files}
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    import fer

    found = {}
    for f, faces in answers.items():
        if faces:
            best = max(faces, key=lambda d: d["box"][2] * d["box"][3])
            found[os.path.basename(f)] = (*best["box"], normalize_name(max(best["emotions"],
                                                                            key=best["emotions"].get)))
    return {"images": len(files), "with_face": len(found), "seconds": dt, "img_s": len(files) / dt,
            "img_s_all": [len(files) / t for t in times], "version": getattr(fer, "__version__", "25.10.3"),
            "score": score_photos(folder, found)}


def worker_predict_inprocess(folder: str, detector: str = "auto", repeats: int = 1) -> dict:
    from fer_keras.predict import FacePredictor, Results, default_model, make_detector, predict_images

    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    pred, det = FacePredictor(default_model()), make_detector(detector)
    predict_images(pred, files[:8], det, 0.15, False, Results(), progress=False)  # warm-up
    times = []
    for _ in range(repeats):
        res = Results()
        t0 = time.perf_counter()
        predict_images(pred, files, det, 0.15, False, res, progress=False)
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    found = {os.path.basename(r["source"]): (r["x"], r["y"], r["w"], r["h"], r["label"]) for r in res.rows}
    return {"detector": detector, "images": len(files), "with_face": len(found), "seconds": dt,
            "img_s": len(files) / dt, "img_s_all": [len(files) / t for t in times],
            "score": score_photos(folder, found)}


def bench_inference(a) -> dict:
    import numpy as np
    import tensorflow as tf

    from fer_keras.run_dir import load_keras_model
    from fer_keras.export import export_savedmodel, export_tflite
    from fer_keras.predict import default_model

    model_path = default_model()
    model = load_keras_model(model_path)
    exp = tempfile.mkdtemp(prefix="fer-bench-export-")
    sm_dir = export_savedmodel(model, [str(i) for i in range(model.get_layer("expression").output.shape[-1])],
                               os.path.join(exp, "savedmodel"))
    for name, quantize in (("model_float.tflite", False), ("model_dynamic.tflite", True)):
        export_tflite(model, os.path.join(exp, name), quantize)
    _, size, _, ch = model.input_shape
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (64, size, size, ch)).astype(np.uint8)
    sm = tf.saved_model.load(sm_dir).signatures["serving_default"]
    calls = 50

    def med(fn):
        fn()
        ts = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    rows = []
    t1 = med(lambda: [sm(images=tf.constant(batch[:1])) for _ in range(calls)]) / calls
    rows.append({"format": "SavedModel", "batch": 1, "ms": 1000 * t1, "faces_s": 1 / t1})
    t64 = med(lambda: sm(images=tf.constant(batch)))
    rows.append({"format": "SavedModel", "batch": 64, "ms": 1000 * t64, "faces_s": 64 / t64})
    for name in sorted(p for p in os.listdir(exp) if p.endswith(".tflite")):
        interp = tf.lite.Interpreter(model_path=os.path.join(exp, name))
        runner = interp.get_signature_runner()
        x1 = batch[:1].astype(np.float32)
        t = med(lambda: [runner(image=x1) for _ in range(calls)]) / calls
        rows.append({"format": f"TFLite {name}", "batch": 1, "ms": 1000 * t, "faces_s": 1 / t})
    folder, desc = _photos(a.photos)
    # The predict CLI as a user runs it (process start, model load, detection, classification, CSV writing)...
    out = tempfile.mkdtemp(prefix="fer-bench-predict-")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fer_keras.predict", folder, "--out", out], check=True, cwd=ROOT,
                   capture_output=True)
    cli_s = time.perf_counter() - t0
    # ...and both tools in-process on the same photos (steady state after a warm-up; median of the repeats), with
    # each of our detectors: BlazeFace (the default) and the Haar cascade that `fer` also uses.
    ours = {d: run_json(["--worker", "predict_inprocess", folder, d, str(a.repeats)])
            for d in ("blazeface", "haar")}
    _ensure_fer_package()
    theirs = run_json(["--worker", "fer_package", folder, str(a.repeats)])
    return {"model": os.path.relpath(model_path, ROOT), "params": model.count_params(), "latency": rows,
            "photos": desc, "n_photos": a.photos, "cli_seconds": cli_s, "cli_img_s": a.photos / cli_s,
            "ours": ours, "fer_package": theirs,
            "speedup_in_process": {d: o["img_s"] / theirs["img_s"] for d, o in ours.items()},
            "command": "python benchmarks/run_all.py --only inference"}


# === 5. Time to accuracy ===

def bench_time_to_accuracy(a) -> dict:
    import csv

    run = a.fer_run
    hist = os.path.join(run, "history.csv")
    if not os.path.isfile(hist):
        raise FileNotFoundError(f"{hist}: train it first (python train_model.py --config configs/fer2013.yaml "
                                f"--name {os.path.basename(run)})")
    with open(hist) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(run, "runtime.json")) as f:
        rt = json.load(f)
    t, reached = 0.0, {}
    for r in rows:
        t += float(r["epoch_seconds"])
        acc = float(r["val_expression_accuracy"])
        for target in (0.55, 0.60, 0.63, 0.65, 0.66, 0.68):
            if acc >= target and target not in reached:
                reached[target] = {"epoch": int(r["epoch"]) + 1, "seconds": t}
    # The checkpoint's val accuracy with test-time augmentation, where `evaluate_model.py --tta ...` has scored it
    # (only evaluations of the run's own val split and preset: eval/ may also hold other data or presets).
    import yaml

    with open(os.path.join(run, "config.yaml")) as f:
        data_cfg = yaml.safe_load(f)["data"]
    tta = {}
    for path in sorted(glob.glob(os.path.join(run, "eval", "*", "metrics.json"))):
        with open(path) as f:
            m = json.load(f)
        info = m.get("info", {})
        if (info.get("tta", "none") != "none" and info.get("split") == "val" and info.get("data") == data_cfg["path"]
                and info.get("preset") == str(data_cfg["labels"])):
            tta[info["tta"]] = m["expression"]["accuracy"]
    return {"run": os.path.relpath(run, ROOT), "epochs": len(rows), "train_seconds": rt.get("train_seconds"),
            "best_val_accuracy": max(float(r["val_expression_accuracy"]) for r in rows), "tta_accuracy": tta,
            "reached": {f"{k:.2f}": v for k, v in reached.items()},
            "command": f"python train_model.py --config configs/fer2013.yaml --name {os.path.basename(run)}"}


def bench_detection(a) -> dict:
    """RetinaNet (configs/darkface_retinanet.yaml) on generated dark scenes for a bounded time, AP on held-out
    scenes (another seed), per-image latency at 640x480 (SavedModel with NMS, and the predict CLI's detector)."""
    import numpy as np
    import tensorflow as tf

    from fer_keras.config import load_config
    from fer_keras.detection.data import read_darkface, write_dark_scenes
    from fer_keras.detection.faces import RetinaNetFaceDetector
    from fer_keras.detection.train import evaluate_detector_run, train_detector
    from fer_keras.export import export_run

    runs = tempfile.mkdtemp(prefix="fer-bench-det-")
    cfg = load_config(os.path.join(ROOT, "configs", "darkface_retinanet.yaml"),
                      [f"train.runs_dir={runs}", "train.name=det", f"train.time_limit_minutes={a.det_minutes}"])
    t0 = time.perf_counter()
    run = train_detector(cfg)
    train_s = time.perf_counter() - t0
    with open(os.path.join(run, "runtime.json")) as f:
        rt = json.load(f)
    held_out = write_dark_scenes(os.path.join(BENCH_DATA, "dark-scenes-test-320x240"), n=100, seed=2)
    large = write_dark_scenes(os.path.join(BENCH_DATA, "dark-scenes-test-640x480"), n=50, size=(640, 480), seed=3)
    _, m_small = evaluate_detector_run(run, data=held_out)
    _, m_large = evaluate_detector_run(run, data=large)
    exported = export_run(run, ["savedmodel"])["savedmodel"]
    serve = tf.saved_model.load(exported).signatures["serving_default"]
    table = read_darkface(large)
    import cv2

    imgs = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in table.sources[:20]]
    serve(images=tf.constant(imgs[0][None]))  # warm-up (tracing)
    sm = []
    for img in imgs:
        t = time.perf_counter()
        serve(images=tf.constant(img[None]))
        sm.append(time.perf_counter() - t)
    det = RetinaNetFaceDetector.from_run(run)
    det(imgs[0])
    py = []
    for img in imgs:
        t = time.perf_counter()
        det(img)
        py.append(time.perf_counter() - t)
    with open(os.path.join(run, "history.csv")) as f:
        n_epochs = sum(1 for _ in f) - 1
    return {"config": "configs/darkface_retinanet.yaml", "time_limit_minutes": a.det_minutes,
            "train_seconds": train_s, "epochs_run": n_epochs, "params": rt["params"],
            "best_val_ap50": rt["best"], "held_out_320x240": m_small, "held_out_640x480": m_large,
            "savedmodel_ms_640x480": 1000 * float(np.median(sm)), "python_detector_ms_640x480": 1000 * float(
                np.median(py)),
            "command": f"python benchmarks/run_all.py --only detection --det-minutes {a.det_minutes}"}


# === RESULTS.md ===

def render() -> str:
    res = {}
    for s in SECTIONS:
        p = os.path.join(RESULTS_DIR, f"{s}.json")
        if os.path.isfile(p):
            with open(p) as f:
                res[s] = json.load(f)
    lines = ["# Benchmark results", "",
             "Written by `python benchmarks/run_all.py` from `benchmarks/results/*.json`; every number was measured "
             "on the machine named in its section. Re-run a section with `--only <section>`.", ""]

    def head(s, title):
        m = res[s]["machine"]
        lines.extend([f"## {title}", "", f"{m['cpu']} ({m['cpus']} CPUs, {m['gpus']} GPUs), Python {m['python']}, "
                      f"TensorFlow {m['tensorflow']}, Keras {m['keras']}; measured {m['date']}.", ""])

    if "training" in res:
        r = res["training"]
        head("training", "1. Training throughput (images/s, batch 32, medians of %d interleaved epochs)" % r["repeats"])
        lines += ["| model | size | params | XLA | precision | img/s | command |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {x['model']} | {x['size']} | {x['params'] / 1e6:.1f}M | {x['xla']} | {x['precision']} | "
                  f"{x['img_s']:.1f} | `{x['command']}` |" for x in r["rows"]]
        lines += ["", "Defaults (`--xla auto --precision auto`) against the best setting:", "",
                  "| model | auto picks | auto img/s | best setting | best img/s | auto / best | within 5% "
                  "| measured |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {v['model']} | xla={'on' if v['auto_xla'] else 'off'} {v['auto_precision']} | "
                  f"{v['auto_img_s']:.1f} | {v['best']} | {v['best_img_s']:.1f} | {v['ratio']:.3f} | "
                  f"{'yes' if v['within_5pct'] else 'NO'} | {v.get('measured', r['machine']['date'][:16])} |"
                  for v in r["auto"]]
        lines.append("")
    if "backbones" in res:
        r = res["backbones"]
        head("backbones", "1b. Every registered image model at 64 px (training img/s, batch 32, XLA off, medians "
                          "of %d interleaved epochs)" % r["repeats"])
        lines += ["| model | params | float32 img/s | bf16 img/s | `auto` picks | faster | auto within 5% "
                  "| command |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {x['model']} | {x['params'] / 1e6:.1f}M | {x['float32_img_s']:.1f} | {x['bf16_img_s']:.1f} | "
                  f"{x['auto_precision']} | {x['best_precision']} | {'yes' if x['auto_within_5pct'] else 'NO'} | "
                  f"`{x['command']}` |" for x in r["rows"]]
        lines.append("")
    if "pipeline" in res:
        r = res["pipeline"]
        head("pipeline", "2. Input-pipeline efficiency (CustomCNN, 48 px gray, batch 64, augmentation on)")
        lines += [f"Data: {r['data']}. {r['steps']} steps per timed epoch, medians of {r['repeats']}. "
                  f"TFRecords prepared in {r['prepare_seconds']:.0f} s. Command: `{r['command']}`", "",
                  "| source | fit img/s | / in-memory |", "|---|---|---|"]
        for k, v in r["results"].items():
            eff = 1.0 if k == "memory" else r["efficiency"][k]
            lines.append(f"| {k} | {v['img_s']:.1f} | {eff:.3f} |")
        lines.append("")
    if "memory" in res:
        r = res["memory"]
        head("memory", f"3. Memory on {r['images']:,} generated 48 px images (one training epoch, tiny CustomCNN)")
        lines += [f"Raw pixels: {r['raw_bytes_mb']:.0f} MB. Generated in {r['generate_seconds']:.0f} s (cached "
                  f"afterwards), TFRecords prepared in {r['prepare_seconds']:.0f} s.", "",
                  "| source | cache budget | train samples | peak RSS | epoch wall | img/s | command |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {x['source']} | {x['budget_mb']} MB | {x['train_samples']:,} | {x['peak_rss_mb']:.0f} MB | "
                  f"{x['wall_s']:.0f} s | {x['train_img_s'] or 0:.0f} | `{x['command']}` |" for x in r["rows"]]
        lines.append("")
    if "inference" in res:
        r = res["inference"]
        head("inference", f"4. Inference of the shipped model (`{r['model']}`, {r['params']:,} params)")
        lines += ["| format | batch | ms per call | faces/s |", "|---|---|---|---|"]
        lines += [f"| {x['format']} | {x['batch']} | {x['ms']:.2f} | {x['faces_s']:.0f} |" for x in r["latency"]]
        t = r["fer_package"]
        ours = r["ours"] if "blazeface" in r["ours"] else {"haar": r["ours"]}  # older results: Haar only
        speed = r["speedup_in_process"] if isinstance(r["speedup_in_process"], dict) else {
            "haar": r["speedup_in_process"]}

        def score(x):
            sc = x.get("score")
            return (f"{sc['found']}/{sc['photos']} | {100 * sc['accuracy_on_found']:.1f}% | "
                    f"{100 * sc['correct_per_photo']:.1f}%") if sc else "- | - | -"

        lines += ["", f"End to end on {r['n_photos']} photos of 640x480 ({r['photos']}; one face each, its position "
                  "and expression label known), detection + classification of the largest face, in the same run. "
                  "Found: the box centre lies on the pasted face; accuracy: expression label on the found faces; "
                  "correct: right label per photo.", "",
                  "| tool | detector | images/s | found | accuracy on found | correct per photo | speed vs `fer` |",
                  "|---|---|---|---|---|---|---|",
                  f"| fer_keras predict CLI (process start to CSV) | blazeface | {r['cli_img_s']:.1f} | | | | |"]
        for d, o in ours.items():
            lines.append(f"| fer_keras in-process (`predict_images`) | {d} | {o['img_s']:.1f} | {score(o)} | "
                         f"**{speed[d]:.2f}x** |")
        lines += [f"| `fer` {t['version']} in-process (`FER().detect_emotions`) | Haar (OpenCV) | {t['img_s']:.1f} "
                  f"| {score(t)} | 1.00x |", "", f"Command: `{r['command']}`", ""]
    if "time_to_accuracy" in res:
        r = res["time_to_accuracy"]
        head("time_to_accuracy", "5. Time to validation accuracy on FER2013 (PublicTest as val)")
        lines += [f"Run `{r['run']}`: {r['epochs']} epochs, best val accuracy {r['best_val_accuracy']:.4f}. "
                  f"Command: `{r['command']}`", "", "| val accuracy | first reached at epoch | wall time |",
                  "|---|---|---|"]
        for k in ("0.55", "0.60", "0.63", "0.65", "0.66", "0.68"):
            v = r["reached"].get(k)
            when = f"{v['seconds'] / 60:.1f} min" if v else "-"
            lines.append(f"| {k} | {v['epoch'] if v else 'not reached'} | {when} |")
        if r.get("tta_accuracy"):
            lines += ["", "The table follows the per-epoch validation (no test-time augmentation). The chosen "
                      "checkpoint with TTA: " + ", ".join(f"`--tta {m}` {a:.2%}" for m, a in r["tta_accuracy"].items())
                      + f" (`python evaluate_model.py --run {r['run']} --tta crops`)."]
        lines.append("")
    if "detection" in res:
        r = res["detection"]
        head("detection", "6. Low-light face detection (RetinaNet, KerasHub, trained from scratch on generated scenes)")
        lines += [f"`{r['config']}`, {r['params']:,} params, trained {r['train_seconds'] / 60:.1f} min "
                  f"({r['epochs_run']} epochs, limit {r['time_limit_minutes']} min); best val AP@0.5 "
                  f"{r['best_val_ap50']:.3f}. Command: `{r['command']}`", "",
                  "| held-out generated scenes | images | faces | AP@0.5 | AP@0.5:0.95 | recall at 1 FP/image |",
                  "|---|---|---|---|---|---|"]
        for k, name in (("held_out_320x240", "320x240 (training size, seed 2)"),
                        ("held_out_640x480", "640x480 (faces 2x smaller after letterboxing, seed 3)")):
            m = r[k]
            lines.append(f"| {name} | {m['images']} | {m['faces']} | {m['ap50']:.3f} | {m['ap50_95']:.3f} | "
                         f"{m['recall@1fppi']:.3f} |")
        lines += ["", f"Per-image latency at 640x480 (batch 1, median of 20): exported SavedModel with NMS "
                  f"{r['savedmodel_ms_640x480']:.0f} ms; the predict CLI's detector (`--detector`) "
                  f"{r['python_detector_ms_640x480']:.0f} ms.", ""]
    libs = [os.path.join(RESULTS_DIR, f) for f in ("detector_libs.json", "detector_libs_stock.json")]
    libs = [json.load(open(f)) for f in libs if os.path.isfile(f)]
    if libs:
        lines += ["## 7. KerasHub vs KerasCV RetinaNet (same backbone shape, batches and optimizer)", "",
                  f"{libs[0]['machine']}, {libs[0]['date']}; 240 generated 320x240 dark scenes for training, 48 "
                  "held-out (seed 1). Commands: " + ", ".join(f"`{r['command']}`" for r in libs), "",
                  "| library | head init | params | steps | train s | AP@0.5 | AP@0.5:0.95 | recall@1 FP/img | "
                  "precision / recall at score 0.5 |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (x for run in libs for x in run["results"]):
            lines.append(f"| {r['library']} | {r['init']} | {r['params']:,} | {r['steps']} | "
                         f"{r['train_seconds']:.0f} | {r['ap50']:.3f} | {r['ap50_95']:.3f} | {r['recall@1fppi']:.3f} | "
                         f"{r['precision@0.5score']:.2f} / {r['recall@0.5score']:.2f} |")
        lines += ["", "Measured while a FER2013 training run shared the CPU (train seconds inflated; AP depends on the "
                  "steps only). Adam 1e-3, no warmup, no schedule. After 120 steps none of KerasCV's scores reached "
                  "the 0.05 NMS threshold (its loss was still falling).", ""]
    return "\n".join(lines)


WORKERS = {"train": lambda a: worker_train(a[0], int(a[1]), int(a[2]), *a[3:5]),
           "pipeline": lambda a: worker_pipeline(a[0], a[1], int(a[2]), int(a[3]), *a[4:]),  # + config overrides
           "memory": lambda a: worker_memory(a[0], a[1], int(a[2])),
           "predict_inprocess": lambda a: worker_predict_inprocess(a[0], a[1], int(a[2])),
           "fer_package": lambda a: worker_fer_package(a[0], int(a[1]))}
BENCHES = {"training": bench_training, "pipeline": bench_pipeline, "memory": bench_memory,
           "inference": bench_inference, "time_to_accuracy": bench_time_to_accuracy, "detection": bench_detection,
           "backbones": bench_backbones}


def main(argv=None):
    global RESULTS_DIR
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scale", type=int, default=100, help="percent of the default steps per timed epoch")
    p.add_argument("--models", default=",".join(TRAIN_MODELS))
    p.add_argument("--backbone-steps", type=int, default=4, help="backbones: steps per timed epoch")
    p.add_argument("--memory-images", type=int, default=200_000)
    p.add_argument("--photos", type=int, default=200)
    p.add_argument("--fer-run", default=os.path.join(ROOT, "runs", "fer2013-v7"))
    p.add_argument("--pipeline-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="pipeline: config overrides for every source, e.g. data.pipeline_cpus=1")
    p.add_argument("--det-minutes", type=float, default=10.0, help="detection: training time limit")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--results-dir", default=RESULTS_DIR, help="where the JSON go (RESULTS.md goes next to it)")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    RESULTS_DIR = os.path.abspath(a.results_dir)
    if a.worker:
        print(json.dumps(WORKERS[a.worker[0]](a.worker[1:])), flush=True)
        return
    if not a.render_only:
        for s in (a.only.split(",") if a.only else SECTIONS):
            if s not in BENCHES:
                p.error(f"unknown section {s!r}; valid: {', '.join(SECTIONS)}")
            t0 = time.perf_counter()
            save(s, BENCHES[s](a))
            print(f"== {s} done in {time.perf_counter() - t0:.0f} s", flush=True)
    from fer_keras.io_utils import atomic_write_text

    out = os.path.join(os.path.dirname(RESULTS_DIR), "RESULTS.md")
    atomic_write_text(out, render())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Section 4: the shipped model's exports (latency, throughput) and the predict CLI end to end next to `fer`."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from suite.common import BENCH_DATA, FER2013, ROOT, run_json


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
        raise SystemExit("the `fer` package (the comparison baseline) is not installed: "
                         "pip install --no-deps -r requirements-bench.txt") from None


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
    from fer_keras.detection.faces import make_detector
    from fer_keras.predict import FacePredictor, Results, predict_images
    from fer_keras.pretrained import resolve_model

    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    pred, det = FacePredictor(resolve_model("default")), make_detector(detector)
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

    from fer_keras.model_info import load_keras_model
    from fer_keras.expression.export import export_savedmodel, export_tflite
    from fer_keras.pretrained import resolve_model

    model_path = resolve_model("default")
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

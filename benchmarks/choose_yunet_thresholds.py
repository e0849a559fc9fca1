"""Chooses the YuNet score threshold (and the dark-photo path of `auto`) on the project's own val photos.

    python benchmarks/choose_yunet_thresholds.py [--first 150 --count 100] [--write] [--lowlight-model RUN]

Val photos: files `first .. first+count` (sorted by name) of each set in ../shared/data/faces (`wider`, `facemask`),
never the first 150 that `bench_detection.py` scores, each also darkened by `lowlight.degrade_low_light` (seeded
per image, other seeds than the benchmark's). Scored as bench_detection.py does: IoU 0.3, WIDER faces under 16 px
ignored. For each set the threshold that keeps false faces within `--fppi` per photo in `--confidence` of bootstrap
resamples of its photos is found (a margin: the plain val threshold went over budget on held-out photos); YuNet's
threshold is the highest over the normal sets, the dark path's the highest over the dark sets, so every set stays
within budget. The dark path is the fastest of `--paths` (the `faces.DARK_PATHS` names) within `--tolerance` of the
best mean recall on the dark sets.
Two darkness tiers (issue 49): the `-dark` sets are darkened to DARK FACE's range (mean brightness 19-41), the `-dim`
sets to `--dim-mean` (45-60: under `DARK_BELOW`, so `auto` sends them to the dark path too, with other seeds). A dim
tier (its own path and threshold for photos from `--dim-from` to `DARK_BELOW`) is written only when it pays: more
than `--tolerance` mean recall on the dim sets than the dark tier's setting gives there, or the dark tier's
threshold over the false-face budget on a dim set.
`--write` stores it in fer_keras/pretrained/yunet/yunet_n.json, which YuNetDetector reads (and the low-light YuNet's
threshold in yunet_lowlight.json). Files from first + count on train the low-light YuNet
(configs/lowlight_yunet.yaml: holdout_first 150, val_first 100), so the count must stay 100 to keep val unseen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_detection import read_set  # noqa: E402
from fer_keras.io_utils import atomic_write_text  # noqa: E402


def add_val_args(p: argparse.ArgumentParser) -> None:
    """The val photos' options, shared by the benchmarks that choose or score on them."""
    p.add_argument("--faces", default=os.path.join(ROOT, "..", "shared", "data", "faces"))
    p.add_argument("--first", type=int, default=150, help="first val photo of each set (the benchmark's come before)")
    p.add_argument("--count", type=int, default=100, help="val photos per set")


DIM_MEAN = (45.0, 60.0)  # the dim tier's val photos: mean brightness between DARK FACE's and DARK_BELOW
DIM_SEED = 200_000  # other noise draws than the dark sets' (load_photos' 100_000)


def load_val(faces: str, first: int, count: int, min_face: float, dark: bool = True):
    """{set name: (photos, face boxes, min face size scored)} for the val photos, normal and (with `dark`) darkened
    to DARK FACE's brightness (`-dark`, as the YuNet runs darken their val photos: `yunet_train.load_photos`) and to
    the dim tier's (`-dim`, `DIM_MEAN`)."""
    from fer_keras.detection.data import DetTable
    from fer_keras.detection.yunet_run import load_photos

    sets = {}
    for name in ("wider", "facemask"):
        items = read_set(os.path.join(faces, name), first + count)[first:]
        table = DetTable([f for f, _ in items], [b for _, b in items])
        lim = min_face if name == "wider" else 0.0
        sets[name] = (load_photos(table), table.boxes, lim)
        if dark:
            sets[f"{name}-dark"] = (load_photos(table, dark=True), table.boxes, lim)
            sets[f"{name}-dim"] = (load_photos(table, dark=True, mean=DIM_MEAN, seed=DIM_SEED), table.boxes, lim)
    return sets


def at_threshold(dets, boxes, min_face: float, iou: float, threshold: float) -> dict:
    """Recall and false faces per photo of detections kept at `threshold`."""
    from fer_keras.detection.metrics import match, split_by_size

    scored, ignored = split_by_size(boxes, min_face)
    scores, tps, _, n_gt = match(dets, scored, iou, ignored)
    keep = scores >= threshold
    return {"recall": float(np.sum(tps & keep) / max(n_gt, 1)), "fppi": float(np.sum(~tps & keep) / len(boxes))}


def dim_tier(sets, dets_by, res, paths, dark_path: str, dark_threshold: float, a) -> dict:
    """Whether the dim photos (`-dim` sets) are better served by their own path and threshold than by the dark tier's:
    {"pays", "path", "threshold", "one_tier", "two_tiers", "verdict"}, the recalls being means over the dim sets.
    `res` holds each set/path's protocol result (threshold with margin, recall, seconds per photo)."""
    dims = [s for s in sets if s.endswith("-dim")]
    one = {s: at_threshold(dets_by[f"{s}/{dark_path}"], sets[s][1], sets[s][2], a.iou, dark_threshold) for s in dims}
    mean = {p: float(np.mean([res[f"{s}/{p}"]["recall"] for s in dims])) for p in paths}
    sec = {p: float(np.mean([res[f"{s}/{p}"]["seconds_per_image"] for s in dims])) for p in paths}
    best = max(mean.values())
    path = min((p for p in mean if mean[p] >= best - a.tolerance), key=lambda p: sec[p])
    threshold = round(max(res[f"{s}/{path}"]["threshold"] for s in dims), 3)
    two = {s: at_threshold(dets_by[f"{s}/{path}"], sets[s][1], sets[s][2], a.iou, threshold) for s in dims}
    one_recall, two_recall = (float(np.mean([r[s]["recall"] for s in dims])) for r in (one, two))
    over = [s for s in dims if one[s]["fppi"] > a.fppi]
    pays = two_recall - one_recall > a.tolerance or bool(over)
    verdict = (f"{path} at {threshold:.3f}: mean recall {two_recall:.3f} vs {one_recall:.3f} with the dark tier's "
               f"{dark_path} at {dark_threshold:.3f}" + (f" (over budget on {', '.join(over)})" if over else "")
               + ("; two tiers pay" if pays else "; one tier is enough"))
    return {"pays": pays, "path": path, "threshold": threshold, "one_tier": one, "two_tiers": two,
            "verdict": verdict}


def main(argv=None) -> dict:
    from fer_keras.detection.faces import DARK_PATHS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_val_args(p)
    p.add_argument("--min-face", type=float, default=16.0)
    p.add_argument("--iou", type=float, default=0.3)
    p.add_argument("--fppi", type=float, default=1.0, help="false faces per photo allowed")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="the budget must hold in this fraction of bootstrap resamples of the val photos "
                        "(detection.metrics.threshold_with_margin)")
    p.add_argument("--paths", default=",".join(DARK_PATHS.names()),
                   help=f"dark-photo paths to compare (of {', '.join(DARK_PATHS.names())})")
    p.add_argument("--lowlight-model", default=None,
                   help="the low-light YuNet to score: a detection run directory or a .keras file (default: the "
                        "shipped one)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="dark path: the fastest within this much mean recall of the best")
    p.add_argument("--dim-from", type=float, default=DIM_MEAN[0],
                   help="where the dim tier starts (mean brightness 0-255; it ends at DARK_BELOW)")
    p.add_argument("--write", action="store_true", help="store the chosen settings in the YuNet settings file")
    a = p.parse_args(argv)
    paths = [DARK_PATHS.canonical(name) for name in a.paths.split(",")]

    from fer_keras.detection.faces import (YUNET_LOWLIGHT_SETTINGS, YUNET_SETTINGS, YuNetDetector, dark_path,
                                           make_detector)
    from fer_keras.detection.lowlight import brightness
    from fer_keras.detection.yunet import KerasYuNetDetector
    from fer_keras.detection.yunet_run import detect_photos
    from fer_keras.detection.metrics import scores_at_fppi

    low = None
    if a.lowlight_model:
        low = ((lambda t: make_detector(a.lowlight_model, min_score=t)) if os.path.isdir(a.lowlight_model) else
               (lambda t: KerasYuNetDetector(a.lowlight_model, t)))
    sets = load_val(a.faces, a.first, a.count, a.min_face)
    detectors = {"yunet": YuNetDetector(min_score=0.05)}
    for name in paths:  # each path at a low threshold: the chooser sets it
        detectors[name] = dark_path(name, 0.05, low) or detectors["yunet"]

    out = {"command": "python benchmarks/choose_yunet_thresholds.py " + " ".join(argv or sys.argv[1:]),
           "val_photos": f"files {a.first}..{a.first + a.count - 1} of each set", "iou": a.iou,
           "min_face": a.min_face, "fppi": a.fppi, "confidence": a.confidence, "results": {}}
    dets_by = {}  # "set/path" -> detections (score >= 0.05) per photo
    for set_name, (imgs, boxes, min_face) in sets.items():
        if not set_name.endswith(("-dark", "-dim")):
            continue
        luma = [brightness(im) for im in imgs]
        print(f"{set_name:14s} mean brightness {np.min(luma):.1f}-{np.max(luma):.1f} (median {np.median(luma):.1f})")
    for set_name, (imgs, boxes, min_face) in sets.items():
        for path in (["yunet"] if not set_name.endswith(("-dark", "-dim")) else paths):
            t0 = time.perf_counter()
            dets = detect_photos(detectors[path], photos=imgs)
            dets_by[f"{set_name}/{path}"] = dets
            sec = (time.perf_counter() - t0) / len(imgs)
            r = {**scores_at_fppi(dets, boxes, min_face, a.iou, a.fppi, a.confidence), "seconds_per_image": sec}
            out["results"][f"{set_name}/{path}"] = {k: round(float(v), 4) for k, v in r.items()}
            print(f"{set_name:14s} {path:22s} recall {r['recall']:.3f} at score >= {r['threshold']:.3f} "
                  f"({r['fppi']:.2f} false faces/photo; plain threshold {r['plain_threshold']:.3f}; AP {r['ap']:.3f}, "
                  f"{sec * 1000:.0f} ms/image)", flush=True)
    res = out["results"]
    darks = [s for s in sets if s.endswith("-dark")]
    # The dark path: the fastest among those within --tolerance of the best mean recall on the dark val sets (a
    # path 20x slower for a point of recall would make dark video unusable).
    mean = {p: np.mean([res[f"{s}/{p}"]["recall"] for s in darks]) for p in paths}
    sec = {p: np.mean([res[f"{s}/{p}"]["seconds_per_image"] for s in darks]) for p in paths}
    best = max(mean.values())
    dark_best = min((p for p in mean if mean[p] >= best - a.tolerance), key=lambda p: sec[p])
    # Each path's threshold holds on every set it runs on: normal photos for YuNet, the dark ones for the dark path.
    thr = max(res[f"{s}/yunet"]["threshold"] for s in sets if not s.endswith(("-dark", "-dim")))
    dark_thr = max(res[f"{s}/{dark_best}"]["threshold"] for s in darks)
    out.update(dark_path=dark_best, score_threshold=round(thr, 3), dark_score_threshold=round(dark_thr, 3))
    print(f"chosen: score_threshold {thr:.3f} (normal photos); dark photos: {dark_best} at {dark_thr:.3f}")
    dim = dim_tier(sets, dets_by, res, paths, dark_best, dark_thr, a)
    out["dim_tier"] = dim
    print(f"dim tier ({a.dim_from:g} to DARK_BELOW): {dim['verdict']}")
    if a.write:
        tiers = ({"dim_from": a.dim_from, "dim_path": dim["path"], "dim_score_threshold": dim["threshold"]}
                 if dim["pays"] else {})
        # What other choosers stored (runtime, two_pass, litert_threads: bench_yunet_runtimes.py) is kept.
        with open(YUNET_SETTINGS) as f:
            kept = {k: v for k, v in json.load(f).items() if k not in ("dim_from", "dim_path", "dim_score_threshold")}
        settings = {**kept, "score_threshold": round(thr, 3), "nms_threshold": 0.3, "max_side": 1280,
                    "upscale_to": 640, "top_k": 750, "dark_path": dark_best, "dark_score_threshold": round(dark_thr, 3),
                    **tiers, "fppi": a.fppi, "confidence": a.confidence, "chosen_by": out["command"],
                    "val_photos": out["val_photos"], "val_results": res, "dim_tier": dim["verdict"]}
        atomic_write_text(YUNET_SETTINGS, json.dumps(settings, indent=1))
        print(f"wrote {YUNET_SETTINGS}")
        if "yunet-lowlight" in mean:
            low_thr = max(res[f"{s}/yunet-lowlight"]["threshold"] for s in darks)
            low_settings = {"score_threshold": round(low_thr, 3), "nms_threshold": 0.3, "max_side": 1280,
                            "upscale_to": 640, "top_k": 750, "fppi": a.fppi, "confidence": a.confidence,
                            "chosen_by": out["command"], "val_photos": out["val_photos"],
                            "val_results": {k: v for k, v in res.items() if k.endswith("/yunet-lowlight")}}
            atomic_write_text(YUNET_LOWLIGHT_SETTINGS, json.dumps(low_settings, indent=1))
            print(f"wrote {YUNET_LOWLIGHT_SETTINGS} (score_threshold {low_thr:.3f}: max over the dark val sets)")
    return out


if __name__ == "__main__":
    main()

"""Chooses the YuNet score threshold (and the dark-photo path of `auto`) on the project's own val photos.

    python benchmarks/choose_yunet_thresholds.py [--first 150 --count 100] [--write] [--lowlight-model RUN]

Val photos: files `first .. first+count` (sorted by name) of each set in ../shared/data/faces (`wider`, `facemask`),
never the first 150 that `bench_detection.py` scores, each also darkened by `lowlight.degrade_low_light` (seeded
per image, other seeds than the benchmark's). Scored as bench_detection.py does: IoU 0.3, WIDER faces under 16 px
ignored. For each set the lowest threshold with <= 1 false positive per image is found; the default threshold is
the highest of those over the normal sets and the dark sets on the path `auto` takes, so every set stays within
1 FP/image. The dark path is the fastest of `--paths` within `--tolerance` of the best mean recall on the dark sets.
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
from types import SimpleNamespace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_detection import read_set  # noqa: E402


def load_val(faces: str, first: int, count: int, min_face: float):
    """{set name: (photos, face boxes, min face size scored)} for the val photos, normal and darkened (darkened as
    the YuNet runs darken their val photos: `yunet_train.load_photos`)."""
    from fer_keras.detection.data import DetTable
    from fer_keras.detection.yunet_train import load_photos

    sets = {}
    for name in ("wider", "facemask"):
        items = read_set(os.path.join(faces, name), first + count)[first:]
        table = DetTable([f for f, _ in items], [b for _, b in items])
        lim = min_face if name == "wider" else 0.0
        sets[name] = (load_photos(table), table.boxes, lim)
        sets[f"{name}-dark"] = (load_photos(table, dark=True), table.boxes, lim)
    return sets


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faces", default=os.path.join(ROOT, "..", "shared", "data", "faces"))
    p.add_argument("--first", type=int, default=150)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--min-face", type=float, default=16.0)
    p.add_argument("--iou", type=float, default=0.3)
    p.add_argument("--paths", default="yunet,yunet-bright,yunet+retinanet,retinanet,yunet-lowlight",
                   help="dark-photo paths to compare (yunet-lowlight: --lowlight-model)")
    p.add_argument("--lowlight-model", default=None,
                   help="the low-light YuNet to score: a detection run directory or a .keras file (default: the "
                        "shipped one)")
    p.add_argument("--tolerance", type=float, default=0.03,
                   help="dark path: the fastest within this much mean recall of the best")
    p.add_argument("--write", action="store_true", help="store the chosen settings in the YuNet settings file")
    a = p.parse_args(argv)

    from fer_keras.detection.faces import (YUNET_LOWLIGHT_SETTINGS, YUNET_SETTINGS, YuNetDetector, lowlight_detector,
                                           make_detector, merge, yunet_lowlight_detector)
    from fer_keras.detection.yunet import KerasYuNetDetector
    from fer_keras.detection.yunet_train import detect_photos
    from fer_keras.detection.lowlight import brighten
    from fer_keras.detection.metrics import scores_at_fppi

    sets = load_val(a.faces, a.first, a.count, a.min_face)
    yunet = YuNetDetector(min_score=0.05)
    low = None

    low_yunet = None

    def run(path, rgb):
        nonlocal low, low_yunet
        if path == "yunet":
            return yunet.detect(rgb)
        if path == "yunet-bright":
            return yunet.detect(brighten(rgb))
        if path == "yunet-lowlight":
            if low_yunet is None:
                low_yunet = (make_detector(a.lowlight_model, min_score=0.05) if a.lowlight_model and
                             os.path.isdir(a.lowlight_model) else
                             KerasYuNetDetector(a.lowlight_model, 0.05) if a.lowlight_model else
                             yunet_lowlight_detector(0.05))
            return low_yunet.detect(rgb)
        low = low or lowlight_detector(0.3)
        if path == "retinanet":
            return low.detect(rgb)
        return merge([yunet.detect(rgb), low.detect(rgb)], 0.3)  # yunet+retinanet

    out = {"command": "python benchmarks/choose_yunet_thresholds.py " + " ".join(argv or sys.argv[1:]),
           "val_photos": f"files {a.first}..{a.first + a.count - 1} of each set", "iou": a.iou,
           "min_face": a.min_face, "results": {}}
    for set_name, (imgs, boxes, min_face) in sets.items():
        paths = ["yunet"] if not set_name.endswith("-dark") else a.paths.split(",")
        for path in paths:
            t0 = time.perf_counter()
            dets = detect_photos(SimpleNamespace(detect=lambda rgb, path=path: run(path, rgb)), photos=imgs)
            sec = (time.perf_counter() - t0) / len(imgs)
            r = {**scores_at_fppi(dets, boxes, min_face, a.iou), "seconds_per_image": sec}
            out["results"][f"{set_name}/{path}"] = {k: round(float(v), 4) for k, v in r.items()}
            print(f"{set_name:14s} {path:16s} recall@1fppi {r['recall']:.3f} at score >= {r['threshold']:.3f} "
                  f"(AP {r['ap']:.3f}, {sec * 1000:.0f} ms/image)", flush=True)
    res = out["results"]
    # The dark path: the fastest among those within --tolerance of the best mean recall on the dark val sets (a
    # path 20x slower for a point of recall would make dark video unusable).
    mean = {p: np.mean([res[f"{s}-dark/{p}"]["recall"] for s in ("wider", "facemask")]) for p in a.paths.split(",")}
    sec = {p: np.mean([res[f"{s}-dark/{p}"]["seconds_per_image"] for s in ("wider", "facemask")]) for p in mean}
    best = max(mean.values())
    dark_best = min((p for p in mean if mean[p] >= best - a.tolerance), key=lambda p: sec[p])
    out["dark_path"] = dark_best
    # YuNet's own threshold must also hold on the dark photos when the dark path runs the stock YuNet on them.
    stock_on_dark = dark_best in ("yunet", "yunet-bright", "yunet+retinanet")
    yunet_sets = ["wider/yunet", "facemask/yunet"] + ([f"{s}-dark/yunet" for s in ("wider", "facemask")]
                                                    if stock_on_dark else [])
    thr = max(res[k]["threshold"] for k in yunet_sets)
    out["score_threshold"] = round(thr, 3)
    print(f"chosen: score_threshold {thr:.3f} (max over {', '.join(yunet_sets)}); dark photos: {dark_best}")
    if a.write:
        settings = {"score_threshold": round(thr, 3), "nms_threshold": 0.3, "max_side": 1280, "upscale_to": 640,
                    "top_k": 750,
                    "dark_path": dark_best, "chosen_by": out["command"], "val_photos": out["val_photos"],
                    "val_results": res}
        with open(YUNET_SETTINGS, "w") as f:
            json.dump(settings, f, indent=1)
        print(f"wrote {YUNET_SETTINGS}")
        if "yunet-lowlight" in mean:
            low_thr = max(res[f"{s}-dark/yunet-lowlight"]["threshold"] for s in ("wider", "facemask"))
            low_settings = {"score_threshold": round(low_thr, 3), "nms_threshold": 0.3, "max_side": 1280,
                            "upscale_to": 640, "top_k": 750, "chosen_by": out["command"],
                            "val_photos": out["val_photos"],
                            "val_results": {k: v for k, v in res.items() if k.endswith("/yunet-lowlight")}}
            with open(YUNET_LOWLIGHT_SETTINGS, "w") as f:
                json.dump(low_settings, f, indent=1)
            print(f"wrote {YUNET_LOWLIGHT_SETTINGS} (score_threshold {low_thr:.3f}: max over the dark val sets)")
    return out


if __name__ == "__main__":
    main()

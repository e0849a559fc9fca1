"""YuNet through each runtime on this CPU: speed at 640x480, recall at 1 false face per photo, and agreement with
the ONNX reference.

    python benchmarks/bench_yunet_runtimes.py [--first 150 --count 100] [--speed-photos 60] [--repeats 3] [--rounds 3]

Variants (all the same YuNet weights, `fer_keras/pretrained/yunet/`):
- `opencv` / `opencv-1t`: the ONNX file through OpenCV's `FaceDetectorYN` (the reference), with OpenCV's default
  threads (one per core) / one thread (`cv2.setNumThreads(1)`);
- `litert-<weights>-<n>t`: the Keras port exported to TFLite (`yunet.export_tflite`, float32 / float16 / int8
  dynamic-range weights) run by LiteRT with XNNPACK on n threads (`yunet_lite.LiteRTYuNetDetector`);
- `two-pass`: OpenCV on the photo downscaled to 320 px first, then on the full photo only when that found no face or
  a face small enough that smaller ones may be missed (`faces.TwoPassDetector`); `two-pass-litert` /
  `two-pass-litert-2t` the same on LiteRT float32, one / two threads.
Speed: images/s over two kinds of 640x480 frames made from `--speed-photos` val photos, one call at a time (a video's
frames), and also with 2 threads of calls (predict's folder mode), best of `--repeats`:
- `crowd`: the val photos resized to 640x480 (WIDER and mask photos: mostly several faces, many small);
- `portrait`: a crop around one face of each val photo (3x the face's size, at least 40 px faces), resized to
  640x480: a close-up, a selfie or a webcam frame, what expression analysis mostly sees.
`--write` ranks by the geometric mean of the two kinds' images/s, so neither kind of photo decides alone.
Recall: on the val photos (files `first .. first+count` of `wider` and `facemask` in ../shared/data/faces,
never the first 150 that bench_detection.py scores), at the plain threshold of 1 false face per photo (IoU 0.3, WIDER
faces under 16 px ignored). Agreement: on Grace Hopper's photo (matplotlib's sample) and 3 val photos, each variant's
boxes matched to OpenCV's (IoU), the largest box and score differences. Writes benchmarks/results/yunet_runtimes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from choose_yunet_thresholds import add_val_args, load_val  # noqa: E402
from fer_keras.io_utils import atomic_write_text  # noqa: E402


def agreement(variant, reference, photos) -> dict:
    """Largest |box| (px) and |score| differences of `variant` from `reference` over matched boxes (score >= 0.3 in
    the reference), and how many reference boxes found no partner at IoU 0.5."""
    from fer_keras.detection.metrics import iou_matrix

    box_diff = score_diff = 0.0
    unmatched = total = 0
    for rgb in photos:
        rb, rs = reference.detect(rgb)
        vb, vs = variant.detect(rgb)
        keep = rs >= 0.3
        rb, rs = rb[keep], rs[keep]
        total += len(rb)
        if not len(rb):
            continue
        if not len(vb):
            unmatched += len(rb)
            continue
        iou = iou_matrix(rb, vb)
        j = iou.argmax(axis=1)
        ok = iou[np.arange(len(rb)), j] >= 0.5
        unmatched += int((~ok).sum())
        if ok.any():
            box_diff = max(box_diff, float(np.abs(rb[ok] - vb[j[ok]]).max()))
            score_diff = max(score_diff, float(np.abs(rs[ok] - vs[j[ok]]).max()))
    return {"max_box_px": round(box_diff, 4), "max_score": round(score_diff, 5), "unmatched": unmatched,
            "reference_boxes": total}


def speed(detector, frames, repeats: int, threads=None) -> float:
    """Best images/s of `repeats` passes over `frames`, one call at a time (`threads`: OpenCV's thread count)."""
    old = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(threads)
    try:
        detector.detect(frames[0])  # warm-up (first-call allocations)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for f in frames:
                detector.detect(f)
            best = max(best, len(frames) / (time.perf_counter() - t0))
        return best
    finally:
        cv2.setNumThreads(old)


def parallel_speed(detector, frames, repeats: int, workers: int = 2) -> float:
    """Best images/s of `repeats` passes with `workers` threads calling the detector, as predict runs a folder."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(detector.detect, frames[:workers]))  # warm-up: one network per thread
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(ex.map(detector.detect, frames))
            best = max(best, len(frames) / (time.perf_counter() - t0))
    return best


def portrait_frames(sets, n: int) -> list:
    """Up to `n` 640x480 close-ups: around the largest face (>= 40 px) of each val photo, a crop 3x its size
    (4:3, clipped to the photo), resized to 640x480."""
    frames = []
    for name in ("facemask", "wider"):
        photos, boxes, _ = sets[name]
        for rgb, b in zip(photos, boxes):
            b = np.asarray(b, np.float32).reshape(-1, 4)
            if not len(b):
                continue
            side = np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1))
            k = int(np.argmax(side))
            if side[k] < 40:
                continue
            cx, cy = (b[k, 0] + b[k, 2]) / 2, (b[k, 1] + b[k, 3]) / 2
            w = 3 * side[k]
            h = w * 3 / 4
            x0, y0 = int(max(0, cx - w / 2)), int(max(0, cy - h / 2))
            x1, y1 = int(min(rgb.shape[1], cx + w / 2)), int(min(rgb.shape[0], cy + h / 2))
            if x1 - x0 < 32 or y1 - y0 < 32:
                continue
            frames.append(cv2.resize(rgb[y0:y1, x0:x1], (640, 480), interpolation=cv2.INTER_LINEAR))
    step = max(1, len(frames) // n)
    return frames[::step][:n]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_val_args(p)
    p.add_argument("--speed-photos", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; each speed is their median")
    p.add_argument("--variants", default="opencv,opencv-1t,litert-float32-2t,litert-float32-1t,litert-float16-1t,"
                                         "litert-int8-1t,two-pass,two-pass-litert,two-pass-litert-2t")
    p.add_argument("--out", default=os.path.join(HERE, "results", "yunet_runtimes.json"))
    p.add_argument("--write", action="store_true",
                   help="ship the choice: the float32 export as fer_keras/pretrained/yunet/yunet_n.tflite, and the "
                        "fastest float32 variant (one call at a time) whose recall is within 0.005 of OpenCV's on "
                        "both sets as `runtime`, `litert_threads` and `two_pass` in yunet_n.json")
    a = p.parse_args(argv)

    import matplotlib

    from fer_keras.detection.faces import YUNET_MODEL, TwoPassDetector, YuNetDetector
    from fer_keras.detection.metrics import scores_at_fppi
    from fer_keras.detection.yunet import export_tflite, inference_model, load_yunet
    from fer_keras.detection.yunet_lite import LiteRTYuNetDetector

    sets = load_val(a.faces, a.first, a.count, 16.0, dark=False)
    all_photos = sets["wider"][0] + sets["facemask"][0]
    frames = [cv2.resize(all_photos[i], (640, 480), interpolation=cv2.INTER_AREA)
              for i in np.linspace(0, len(all_photos) - 1, a.speed_photos).astype(int)]
    portraits = portrait_frames(sets, a.speed_photos)
    hopper = cv2.imread(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                                     "grace_hopper.jpg"))[..., ::-1].copy()
    agree_photos = [hopper] + sets["facemask"][0][:3]

    tmp = tempfile.mkdtemp()
    port = None

    def build(name: str, min_score: float):
        nonlocal port
        if name.startswith("opencv"):
            return YuNetDetector(min_score=min_score)
        if name == "two-pass":
            return TwoPassDetector(YuNetDetector(min_score=min_score))
        if name.startswith("two-pass-litert"):
            return TwoPassDetector(build("litert-float32-" + ("2t" if name.endswith("-2t") else "1t"), min_score))
        _, weights, threads = name.split("-")
        path = os.path.join(tmp, f"yunet_{weights}.tflite")
        if not os.path.isfile(path):
            port = port or inference_model(load_yunet(os.path.join(os.path.dirname(YUNET_MODEL), "yunet_n.pth")))
            export_tflite(port, path, weights)
        return LiteRTYuNetDetector(path, min_score, threads=int(threads[:-1]))

    reference = YuNetDetector(min_score=0.05)
    out = {"command": "python benchmarks/bench_yunet_runtimes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "cpu_count": os.cpu_count(), "frames": f"{len(frames)} val photos resized to 640x480",
           "portraits": f"{len(portraits)} close-ups around one face of the val photos, at 640x480",
           "recall": "plain threshold at 1 false face/photo, IoU 0.3", "variants": {}}
    names = a.variants.split(",")
    dets_by = {name: build(name, 0.05) for name in names}
    # Speeds in interleaved rounds, the median of each: on this shared CPU one pass can be 30% off, and the variants
    # timed one after another would each meet another moment of it.
    timings = {name: [] for name in names}
    for _ in range(a.rounds):
        for name in names:
            det, threads = dets_by[name], (1 if name == "opencv-1t" else None)
            timings[name].append((speed(det, frames, a.repeats, threads), speed(det, portraits, a.repeats, threads),
                                  parallel_speed(det, frames, a.repeats), parallel_speed(det, portraits, a.repeats)))
    for name in names:
        det = dets_by[name]
        med = np.median(np.array(timings[name]), axis=0)
        r = {"images_per_second_640x480": round(float(med[0]), 1), "images_per_second_portraits": round(float(med[1]), 1),
             # predict's folder mode: 2 threads of calls
             "images_per_second_2_workers": round(float(med[2]), 1),
             "images_per_second_portraits_2_workers": round(float(med[3]), 1), "rounds": a.rounds}
        r["speed_geomean"] = round(float(np.sqrt(r["images_per_second_640x480"] * r["images_per_second_portraits"])), 1)
        r["speed_geomean_2_workers"] = round(float(np.sqrt(r["images_per_second_2_workers"]
                                                           * r["images_per_second_portraits_2_workers"])), 1)
        for set_name, (photos, boxes, min_face) in sets.items():
            found = []
            for rgb in photos:
                b, s = det.detect(rgb)
                found.append(np.concatenate([b, s[:, None]], 1) if len(b) else np.zeros((0, 5), np.float32))
            sc = scores_at_fppi(found, boxes, min_face, 0.3)
            r[f"{set_name}_recall"] = round(sc["recall"], 4)
            r[f"{set_name}_threshold"] = round(sc["threshold"], 4)
        if name not in ("opencv", "opencv-1t"):
            r["agreement"] = agreement(det, reference, agree_photos)
        out["variants"][name] = r
        print(f"{name:20s} crowd {r['images_per_second_640x480']:6.1f} img/s ({r['images_per_second_2_workers']} with "
              f"2 workers), portraits {r['images_per_second_portraits']:6.1f} "
              f"({r['images_per_second_portraits_2_workers']}), geomean {r['speed_geomean']:6.1f} "
              f"({r['speed_geomean_2_workers']})  recall wider {r['wider_recall']:.3f} "
              f"facemask {r['facemask_recall']:.3f}  {r.get('agreement', '')}", flush=True)
    if a.write:
        out["chosen"] = write_choice(out["variants"], os.path.join(tmp, "yunet_float32.tflite"))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    return out


def write_choice(variants: dict, float32_file: str) -> str:
    """Ships the fastest float32 variant (geometric mean of crowd and portrait frames, one call at a time) within
    0.005 recall of OpenCV (see `--write`); returns its name."""
    import shutil

    from fer_keras.detection.faces import YUNET_SETTINGS, YUNET_TFLITE

    ref = variants["opencv"]
    ok = {n: v for n, v in variants.items() if "float16" not in n and "int8" not in n
          and all(v[f"{s}_recall"] >= ref[f"{s}_recall"] - 0.005 for s in ("wider", "facemask"))}
    best = max(ok, key=lambda n: ok[n]["speed_geomean"])
    if os.path.isfile(float32_file):
        shutil.copyfile(float32_file, YUNET_TFLITE)
    with open(YUNET_SETTINGS) as f:
        settings = json.load(f)
    settings.update(runtime="litert" if "litert" in best else "opencv", two_pass=best.startswith("two-pass"),
                    litert_threads=2 if best.endswith("-2t") else 1,
                    runtime_chosen_by="python benchmarks/bench_yunet_runtimes.py --write: " + best)
    atomic_write_text(YUNET_SETTINGS, json.dumps(settings, indent=1))
    print(f"chosen: {best}; wrote {YUNET_SETTINGS}" + (f" and {YUNET_TFLITE}" if "litert" in best else ""))
    return best


if __name__ == "__main__":
    main()

"""predict as a user runs it, next to the `fer` package: photos, a video, one photo's start-up, detector speed.

    python benchmarks/bench_end_to_end.py [--photos 600] [--frames 300] [--repeats 2]

Every number is a whole process timed from outside (start-up, model load, detection, classification, output), the
way a user waits for it, median of `--repeats`:
- photos: `--photos` one-face 640x480 scenes (FER2013 val faces pasted on blurred noise, written by suite/inference.py's
  `_photos`, with their truth), `python -m fer_keras.predict <folder>` vs a script that runs `fer`'s
  `FER().detect_emotions` on each photo; both scored on the face found (box centre in the pasted face) and its label.
- video: a `--frames` 640x480 clip of one of those faces drifting across the frame, `predict <clip>` (tracks,
  detection every 3 frames) vs `fer` on the same frames as images.
- start-up: `predict` on one photo (the shipped model through LiteRT, YuNet through OpenCV).
- detector: YuNet (the default) images/s on 640x480 photos, one thread.
`fer` (25.10.3, `pip install --no-deps -r requirements-bench.txt`) rows are skipped when it is not installed:
this script never installs anything. Writes benchmarks/results/end_to_end.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from bench_detection import images_per_second  # noqa: E402
from suite.inference import _photos, score_photos  # noqa: E402

FER_SCRIPT = r"""
import json, os, sys, time
import cv2
from fer.fer import FER
files = json.load(open(sys.argv[1]))
det = FER(mtcnn=False)
out = {}
for f in files:
    faces = det.detect_emotions(cv2.imread(f))
    if faces:
        b = max(faces, key=lambda d: d["box"][2] * d["box"][3])
        out[os.path.basename(f)] = [*map(int, b["box"]), max(b["emotions"], key=b["emotions"].get)]
json.dump(out, open(sys.argv[2], "w"))
"""


def timed(cmd, repeats: int) -> float:
    """Median wall time of a command (which must succeed)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fer_installed() -> bool:
    return subprocess.run([sys.executable, "-c", "import fer.fer"], capture_output=True).returncode == 0


def our_answers(out_dir: str) -> dict:
    """file name -> (x, y, w, h, label) of the largest face predict reported per photo."""
    from fer_keras.labels import normalize_name

    best = {}
    with open(os.path.join(out_dir, "predictions.csv"), newline="") as f:
        for r in csv.DictReader(f):
            k = os.path.basename(r["source"])
            box = tuple(int(r[c]) for c in ("x", "y", "w", "h"))
            if k not in best or box[2] * box[3] > best[k][2] * best[k][3]:
                best[k] = (*box, normalize_name(r["label"]))
    return best


def make_video(folder: str, path: str, frames: int) -> list:
    """A clip of one pasted face drifting across a 640x480 background; also returns the frames as JPEG paths."""
    with open(os.path.join(folder, "truth.csv")) as f:
        t = next(csv.DictReader(f))
    img = cv2.imread(os.path.join(folder, t["file"]))
    x, y, s = int(t["x"]), int(t["y"]), int(t["size"])
    face = img[y:y + s, x:x + s]
    bg = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (480, 640, 3)).astype(np.uint8), (0, 0), 8)
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    frame_dir = tempfile.mkdtemp(prefix="fer-bench-frames-")
    files = []
    for i in range(frames):
        fx = int((640 - s) * (0.5 + 0.45 * np.sin(i / 40)))
        fy = int((480 - s) * (0.5 + 0.3 * np.cos(i / 55)))
        frame = bg.copy()
        frame[fy:fy + s, fx:fx + s] = face
        w.write(frame)
        files.append(os.path.join(frame_dir, f"f{i:04d}.jpg"))
        cv2.imwrite(files[-1], frame)
    w.release()
    return files


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=int, default=600)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=os.path.join(HERE, "results", "end_to_end.json"))
    a = p.parse_args(argv)
    py = sys.executable
    folder, desc = _photos(a.photos)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    tmp = tempfile.mkdtemp(prefix="fer-bench-e2e-")
    res = {"command": "python benchmarks/bench_end_to_end.py " + " ".join(argv or sys.argv[1:]),
           "photos": desc, "n_photos": len(files), "frames": a.frames, "repeats": a.repeats}
    have_fer = fer_installed()

    out = os.path.join(tmp, "photos")
    sec = timed([py, "-m", "fer_keras.predict", folder, "--out", out, "-q"], a.repeats)
    res["ours_photos"] = {"seconds": sec, "img_s": len(files) / sec, "score": score_photos(folder, our_answers(out))}
    print(f"predict on {len(files)} photos: {sec:.1f} s, found {res['ours_photos']['score']['found_rate']:.3f}",
          flush=True)
    if have_fer:
        lst = os.path.join(tmp, "files.json")
        json.dump(files, open(lst, "w"))
        ans = os.path.join(tmp, "fer.json")
        script = os.path.join(tmp, "fer_run.py")
        open(script, "w").write(FER_SCRIPT)
        sec = timed([py, script, lst, ans], a.repeats)
        from fer_keras.labels import normalize_name

        found = {k: (*v[:4], normalize_name(v[4])) for k, v in json.load(open(ans)).items()}
        res["fer_photos"] = {"seconds": sec, "img_s": len(files) / sec, "score": score_photos(folder, found)}
        res["photos_speedup"] = res["fer_photos"]["seconds"] / res["ours_photos"]["seconds"]
        print(f"fer on the same photos: {sec:.1f} s ({res['photos_speedup']:.2f}x)", flush=True)

    video = os.path.join(tmp, "clip.mp4")
    frames = make_video(folder, video, a.frames)
    sec = timed([py, "-m", "fer_keras.predict", video, "--out", os.path.join(tmp, "video"), "-q"], a.repeats)
    rows = list(csv.DictReader(open(os.path.join(tmp, "video", "predictions.csv"))))
    res["ours_video"] = {"seconds": sec, "fps": a.frames / sec, "frames_with_face": len({r["frame"] for r in rows}),
                         "tracks": len({r["track"] for r in rows}),
                         "label_changes": sum(1 for x, y in zip(rows[:-1], rows[1:]) if x["label"] != y["label"])}
    print(f"predict on a {a.frames}-frame clip: {sec:.1f} s ({a.frames / sec:.1f} fps)", flush=True)
    if have_fer:
        lst = os.path.join(tmp, "frames.json")
        json.dump(frames, open(lst, "w"))
        sec = timed([py, os.path.join(tmp, "fer_run.py"), lst, os.path.join(tmp, "fer_video.json")], a.repeats)
        res["fer_video"] = {"seconds": sec, "fps": a.frames / sec}
        res["video_speedup"] = sec / res["ours_video"]["seconds"]
        print(f"fer on the same frames: {sec:.1f} s ({res['video_speedup']:.2f}x)", flush=True)

    one = files[0]
    res["one_photo_seconds"] = min(timed([py, "-m", "fer_keras.predict", one, "--out", os.path.join(tmp, "one"),
                                          "-q"], 1) for _ in range(3))
    print(f"predict on one photo: {res['one_photo_seconds']:.2f} s", flush=True)

    from fer_keras.detection.faces import make_detector

    imgs = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files[:20]]
    res["detector_img_s_640x480"] = images_per_second(make_detector("auto"), imgs, repeats=3)
    print(f"default detector: {res['detector_img_s_640x480']:.1f} images/s at 640x480", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()

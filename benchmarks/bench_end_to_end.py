"""predict as a user runs it, next to the `fer` package: photos, a video, one photo's start-up, detector speed.

    python benchmarks/bench_end_to_end.py [--photos 600] [--frames 300] [--repeats 2] [--dim-share 0.1]

Every number is a whole process timed from outside (start-up, model load, detection, classification, output), the
way a user waits for it, median of `--repeats`:
- photos: `--photos` one-face 640x480 scenes (FER2013 val faces pasted on blurred noise, written by suite/inference.py's
  `_photos`, with their truth), `--dim-share` of them made dim (mean luma 40-60, `lowlight.degrade_low_light`: the
  photos `auto` sends to its dark path), `python -m fer_keras.predict <folder>` vs a script that runs `fer`'s
  `FER().detect_emotions` on each photo; both scored on the face found (box centre in the pasted face) and its label.
- video: a `--frames` 640x480 clip of one of those faces drifting across the frame, `predict <clip>` (tracks,
  detection every 3 frames) vs `fer` on the same frames as images; and the same clip dim (frames at mean luma
  52-68 around the dark threshold, flickering), with its tracks counted (one-detection phantoms included).
- start-up: `predict` on one photo (the shipped model through LiteRT, YuNet through OpenCV), and on one dark
  1080x720 photo (mean luma about 30: the low-light YuNet through LiteRT), with the process's peak RSS.
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


def dim_copy(folder: str, share: float, seed: int = 3) -> tuple:
    """A copy of the photo folder where every `round(1 / share)`-th photo is dim (mean luma 40-60, degraded as a
    dim camera photo); returns (folder, the dim files' names)."""
    import shutil

    from fer_keras.detection.lowlight import degrade_low_light

    out = tempfile.mkdtemp(prefix="fer-bench-dim-")
    names = sorted(f for f in os.listdir(folder) if f.endswith(".jpg"))
    step = max(1, int(round(1 / share))) if share > 0 else 0
    dim = set(names[::step]) if step else set()
    rng = np.random.default_rng(seed)
    for f in names:
        if f in dim:
            rgb = cv2.cvtColor(cv2.imread(os.path.join(folder, f)), cv2.COLOR_BGR2RGB)
            dark = degrade_low_light(rgb, rng, mean=(40.0, 60.0))
            cv2.imwrite(os.path.join(out, f), cv2.cvtColor(dark, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        else:
            shutil.copy(os.path.join(folder, f), out)
    shutil.copy(os.path.join(folder, "truth.csv"), out)
    return out, sorted(dim)


def dim_video(src: str, path: str, seed: int = 4) -> None:
    """The clip `src` made dim: each frame scaled to a mean luma drawn around the dark threshold (52-68, a new
    level every 10 frames, so a frame-by-frame choice would flip), with sensor-like noise."""
    rng = np.random.default_rng(seed)
    cap = cv2.VideoCapture(src)
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    i, level = 0, 60.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 10 == 0:
            level = float(rng.uniform(52, 68))
        f = frame.astype(np.float32) * (level / max(float(frame.mean()), 1.0))
        f += rng.normal(0, 3, f.shape)
        w.write(np.clip(f, 0, 255).astype(np.uint8))
        i += 1
    w.release()


def whole_process(cmd) -> tuple:
    """(seconds, peak RSS in MB) of one run of `cmd`, a Python command line, measured in its own process."""
    code = ("import resource, runpy, sys\n"
            f"sys.argv = {cmd[2:]!r}\n"
            "try:\n    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
            "except SystemExit:\n    pass\n"
            "print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    t0 = time.perf_counter()
    r = subprocess.run([cmd[0], "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
    sec = time.perf_counter() - t0
    kb = int([ln for ln in r.stderr.splitlines() if ln.startswith("RSS_KB")][-1].split()[1])
    return sec, kb / 1024


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=int, default=600)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dim-share", type=float, default=0.1, help="share of the photos made dim (mean luma 40-60)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "end_to_end.json"))
    a = p.parse_args(argv)
    py = sys.executable
    bright, desc = _photos(a.photos)
    folder, dim = dim_copy(bright, a.dim_share)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    tmp = tempfile.mkdtemp(prefix="fer-bench-e2e-")
    res = {"command": "python benchmarks/bench_end_to_end.py " + " ".join(argv or sys.argv[1:]),
           "photos": desc + f"; {len(dim)} of them dim (mean luma 40-60)", "n_photos": len(files),
           "n_dim_photos": len(dim), "frames": a.frames, "repeats": a.repeats}
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
    dim_clip = os.path.join(tmp, "dim_clip.mp4")
    dim_video(video, dim_clip)
    sec = timed([py, "-m", "fer_keras.predict", dim_clip, "--out", os.path.join(tmp, "dim_video"), "-q"], a.repeats)
    rows = list(csv.DictReader(open(os.path.join(tmp, "dim_video", "predictions.csv"))))
    res["ours_dim_video"] = {"seconds": sec, "fps": a.frames / sec,
                             "frames_with_face": len({r["frame"] for r in rows}),
                             "frames_with_face_share": len({r["frame"] for r in rows}) / a.frames,
                             "tracks": len({r["track"] for r in rows})}
    print(f"predict on the dim clip: {sec:.1f} s ({a.frames / sec:.1f} fps), a face in "
          f"{res['ours_dim_video']['frames_with_face_share']:.3f} of the frames, "
          f"{res['ours_dim_video']['tracks']} track(s)", flush=True)
    if have_fer:
        lst = os.path.join(tmp, "frames.json")
        json.dump(frames, open(lst, "w"))
        sec = timed([py, os.path.join(tmp, "fer_run.py"), lst, os.path.join(tmp, "fer_video.json")], a.repeats)
        res["fer_video"] = {"seconds": sec, "fps": a.frames / sec}
        res["video_speedup"] = sec / res["ours_video"]["seconds"]
        res["dim_video_speedup"] = sec / res["ours_dim_video"]["seconds"]  # fer's time on the bright frames
        print(f"fer on the same frames: {sec:.1f} s ({res['video_speedup']:.2f}x; dim clip "
              f"{res['dim_video_speedup']:.2f}x)", flush=True)

    one = files[0]
    res["one_photo_seconds"] = min(timed([py, "-m", "fer_keras.predict", one, "--out", os.path.join(tmp, "one"),
                                          "-q"], 1) for _ in range(3))
    print(f"predict on one photo: {res['one_photo_seconds']:.2f} s", flush=True)
    from fer_keras.detection.lowlight import brightness, degrade_low_light

    big = cv2.resize(cv2.imread(files[1]), (1080, 720), interpolation=cv2.INTER_CUBIC)
    dark = degrade_low_light(cv2.cvtColor(big, cv2.COLOR_BGR2RGB), np.random.default_rng(5), mean=(28.0, 32.0))
    dark_path = os.path.join(tmp, "dark_1080x720.jpg")
    cv2.imwrite(dark_path, cv2.cvtColor(dark, cv2.COLOR_RGB2BGR))
    runs = [whole_process([py, "-m", "fer_keras.predict", dark_path, "--out", os.path.join(tmp, f"dark{i}"), "-q"])
            for i in range(3)]
    res["one_dark_photo"] = {"seconds": min(r[0] for r in runs), "peak_rss_mb": min(r[1] for r in runs),
                             "mean_luma": brightness(dark)}
    print(f"predict on one dark 1080x720 photo (luma {brightness(dark):.0f}): "
          f"{res['one_dark_photo']['seconds']:.2f} s, {res['one_dark_photo']['peak_rss_mb']:.0f} MB", flush=True)

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

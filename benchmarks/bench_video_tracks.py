"""Phantom tracks in video: chooses predict's `--confirm N` on clips with face boxes in every frame.

    python benchmarks/bench_video_tracks.py [--first 150 --count 100] [--shots 12] [--confirm 1,2,3,4]

No clip with boxes is available here, so the clips are made from the val photos of ../shared/data/faces (files
`first .. first+count` of `facemask` and `wider`, never the first 150 that `bench_detection.py` scores): each shot
is one photo seen through a moving 4:3 camera (a pan and a zoom between two random crops, with hand-held jitter),
640x480, 30 frames/s, written as an MP4 so the detector sees codec artefacts; a cut to the next photo every
`--frames-per-shot` frames. The boxes move with the camera, so every frame has its truth. The facemask shots
(one to a few large faces) make the `main` clip; the WIDER shots (crowds, small faces, busy scenes) the `crowd` clip.

Each `--confirm` value runs the real video path (`fer_keras.Analyzer(confirm=N).analyze_video`, detection every 5
frames, padding 0) and scores its rows:
- a row is a face when its box overlaps a true face in that frame (IoU >= 0.3, faces of any size);
- a **false track** is a reported track whose rows are faces in under half of its frames; reported per minute;
- **main-face frames**: frames whose largest true face (>= 48 px, wholly in view) is among the rows;
- false rows per frame, and the rows and tracks dropped as unconfirmed.
Writes benchmarks/results/video_tracks.json.
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

from bench_detection import read_set  # noqa: E402
from choose_yunet_thresholds import add_val_args  # noqa: E402

FPS = 30
SIZE = (640, 480)


def camera_path(rng: np.random.Generator, height: int, width: int, frames: int) -> np.ndarray:
    """(frames, 4) crop windows x0 y0 x1 y1 of a 4:3 camera that pans and zooms between two random crops."""
    def crop():
        w = rng.uniform(0.55, 1.0) * min(width, height * 4 / 3)
        h = w * 3 / 4
        return np.array([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h])

    a, b = crop(), crop()
    t = np.linspace(0.0, 1.0, frames)[:, None]
    win = a * (1 - t) + b * t
    win[:, :2] += rng.normal(0.0, 0.004 * win[:, 2:3], (frames, 2))  # hand-held jitter, a fraction of the view
    win[:, 0] = np.clip(win[:, 0], 0, width - win[:, 2])
    win[:, 1] = np.clip(win[:, 1], 0, height - win[:, 3])
    return np.concatenate([win[:, :2], win[:, :2] + win[:, 2:]], axis=1)


def make_clip(items, path: str, frames_per_shot: int, seed: int):
    """Writes the clip of `items` [(photo, boxes x1 y1 x2 y2)] to `path`; returns per frame the true boxes (N, 4)
    in frame pixels."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    truth = []
    for photo, boxes in items:
        bgr = cv2.imread(photo, cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        for x0, y0, x1, y1 in camera_path(rng, h, w, frames_per_shot):
            sx, sy = SIZE[0] / (x1 - x0), SIZE[1] / (y1 - y0)
            m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
            writer.write(cv2.warpAffine(bgr, m, SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
            b = (boxes - [x0, y0, x0, y0]) * [sx, sy, sx, sy]
            truth.append(b.astype(np.float32))
    writer.release()
    return truth


def score(df, truth, min_main: float = 48.0) -> dict:
    """The track numbers of one run (see the module docstring)."""
    from fer_keras.detection.metrics import iou_matrix

    frames = len(truth)
    is_face = np.zeros(len(df), bool)
    for k, (f, x, y, w, h) in enumerate(zip(df["frame"], df["x"], df["y"], df["w"], df["h"])):
        gt = truth[int(f)]
        if len(gt):
            is_face[k] = iou_matrix(np.array([[x, y, x + w, y + h]], np.float32), gt).max() >= 0.3
    tracks = {}
    for tid, face in zip(df["track"], is_face):
        tracks.setdefault(int(tid), []).append(face)
    false_tracks = sum(np.mean(v) < 0.5 for v in tracks.values())
    main_frames = main_found = 0
    for f, gt in enumerate(truth):
        inside = gt[(gt[:, 0] >= 0) & (gt[:, 1] >= 0) & (gt[:, 2] <= SIZE[0]) & (gt[:, 3] <= SIZE[1])]
        side = np.sqrt(np.prod(inside[:, 2:] - inside[:, :2], axis=1)) if len(inside) else np.zeros(0)
        if not len(side) or side.max() < min_main:
            continue
        main = inside[int(np.argmax(side))][None]
        main_frames += 1
        rows = df[df["frame"] == f]
        if len(rows):
            b = rows[["x", "y", "w", "h"]].to_numpy(np.float32)
            main_found += iou_matrix(np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1), main).max() >= 0.3
    return {"frames": frames, "tracks": len(tracks), "false_tracks": int(false_tracks),
            "false_tracks_per_minute": round(false_tracks / (frames / FPS / 60.0), 2),
            "false_rows_per_frame": round(float((~is_face).sum()) / frames, 3),
            "main_face_frames": round(main_found / max(main_frames, 1), 4), "frames_with_main_face": main_frames}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_val_args(p)
    p.add_argument("--shots", type=int, default=12, help="photos per clip")
    p.add_argument("--frames-per-shot", type=int, default=60)
    p.add_argument("--confirm", default="1,2,3,4", help="the --confirm values to compare")
    p.add_argument("--detector", default="auto")
    p.add_argument("--out", default=os.path.join(HERE, "results", "video_tracks.json"))
    a = p.parse_args(argv)

    from fer_keras import Analyzer

    rng = np.random.default_rng(0)
    clips = {}
    for clip, folder, min_side in (("main", "facemask", 48.0), ("crowd", "wider", 0.0)):
        items = read_set(os.path.join(a.faces, folder), a.first + a.count)[a.first:]
        if min_side:  # a shot needs a main face: one whose box is at least min_side px in the photo
            items = [(f, b) for f, b in items if np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1)).max() >= min_side]
        clips[clip] = [items[i] for i in sorted(rng.choice(len(items), min(a.shots, len(items)), replace=False))]
    out = {"command": "python benchmarks/bench_video_tracks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "clips": {k: [os.path.basename(f) for f, _ in v] for k, v in clips.items()}, "detector": a.detector,
           "detect_every": 5, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for clip, items in clips.items():
            path = os.path.join(tmp, f"{clip}.mp4")
            truth = make_clip(items, path, a.frames_per_shot, seed=1 if clip == "main" else 2)
            for n in (int(v) for v in a.confirm.split(",")):
                analyzer = Analyzer(detector=a.detector, padding=0.0, confirm=n)
                t0 = time.perf_counter()
                df = analyzer.analyze_video(path)
                r = {**score(df, truth), "seconds": round(time.perf_counter() - t0, 2),
                     "unconfirmed_tracks": int(df.attrs.get("unconfirmed_tracks", -1)),
                     "unconfirmed_rows": int(df.attrs.get("unconfirmed_rows", -1))}
                out["results"][f"{clip}/confirm{n}"] = r
                print(f"{clip:6s} confirm {n}: {r['tracks']:3d} tracks, {r['false_tracks']:3d} false "
                      f"({r['false_tracks_per_minute']:.1f}/min), false rows/frame {r['false_rows_per_frame']:.3f}, "
                      f"main face in {r['main_face_frames']:.1%} of {r['frames_with_main_face']} frames, "
                      f"dropped {r['unconfirmed_tracks']} tracks / {r['unconfirmed_rows']} rows", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()

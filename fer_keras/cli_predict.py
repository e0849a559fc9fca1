"""`python -m fer_keras.predict` / `fer-predict`: detect → track → classify faces in images, folders, videos and
webcams, and write predictions.csv / .json, errors.csv and, for folders named like classes, their accuracy.

The work is done by the library (`fer_keras.predict`: FacePredictor, predict_images, predict_video); this module
parses the flags, scores labelled folders and writes the files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fer_keras.detection.faces import DETECTORS, make_detector, whole_image
from fer_keras.cli_common import CliParser
from fer_keras.errors import DataError, cli_main
from fer_keras.io_utils import atomic_write_text
from fer_keras.labels import PRESETS, map_name, normalize_name
from fer_keras.model_info import VA_UNTRAINED_NOTE
from fer_keras.predict import (BACKENDS, CONFIRM, FacePredictor, Results, can_show, check_options, expand_inputs,
                               predict_images, predict_video)
from fer_keras.pretrained import resolve_model, shipped_names_help
from fer_keras.calibration import CALIBRATION_MODES
from fer_keras.tta import TTA

LABEL_PATH_COLUMNS = ("path", "file", "filename", "image")
LABEL_CLASS_COLUMNS = ("expression", "label", "emotion", "class")


def read_folder_labels(folder: str) -> Dict[str, str]:
    """The labels of a flat folder (JAFFE-style): `<folder>/labels.csv` with a path column (path/file/filename/
    image, relative to the folder) and a label column (expression/label/emotion/class) → {absolute image path:
    label}. Empty when there is no such file; a file without those columns raises a one-line DataError."""
    table = os.path.join(folder, "labels.csv")
    if not os.path.isfile(table):
        return {}
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip().lower() for c in reader.fieldnames or []]
            path_col = next((c for c in LABEL_PATH_COLUMNS if c in cols), None)
            label_col = next((c for c in LABEL_CLASS_COLUMNS if c in cols), None)
            if path_col is None or label_col is None:
                raise DataError(f"{table}: needs a path column ({'/'.join(LABEL_PATH_COLUMNS)}) and a label column "
                                f"({'/'.join(LABEL_CLASS_COLUMNS)}); it has {', '.join(cols) or 'none'}")
            names = dict(zip(cols, reader.fieldnames))
            return {os.path.abspath(os.path.join(folder, (r.get(names[path_col]) or "").strip())):
                    (r.get(names[label_col]) or "").strip() for r in reader
                    if (r.get(names[path_col]) or "").strip()}
    except UnicodeDecodeError as e:
        raise DataError(f"{table}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except (csv.Error, OSError) as e:
        raise DataError(f"{table}: cannot read it as CSV ({e})") from None


def folder_accuracy(rows: Sequence[dict], class_names: Sequence[str], preset: Optional[str] = None,
                    labels: Optional[Dict[str, str]] = None) -> List[dict]:
    """Per-folder accuracy for images whose parent folder is named like a class (aliases such as angry/anger,
    pos/positive), as in `<root>/<class>/*.jpg` test folders, or whose label is in `labels` ({absolute path:
    label}, from a flat folder's labels.csv: `read_folder_labels`; scored per folder and class)."""
    labels = labels or {}

    stats: Dict[str, List[int]] = {}
    largest: Dict[str, dict] = {}  # a labelled image is scored by its largest face (the subject of the photo)
    for r in rows:
        if r["frame"] == "":
            best = largest.get(r["source"])
            if best is None or r.get("w", 0) * r.get("h", 0) > best.get("w", 0) * best.get("h", 0):
                largest[r["source"]] = r
    for r in largest.values():
        listed = labels.get(os.path.abspath(r["source"]))
        folder = listed if listed is not None else os.path.basename(os.path.dirname(r["source"]))
        canon = normalize_name(folder)
        if canon is None:
            continue
        if canon in class_names:
            true = canon
        else:
            try:
                idx = map_name(canon, preset or str(len(class_names)))
            except DataError:  # e.g. a 'positive' folder scored by a 7-class model
                idx = None
            if idx is None:
                continue
            true = class_names[idx]
        key = os.path.dirname(r["source"]) + (f" (labels.csv: {true})" if listed is not None else "")
        s = stats.setdefault(key, [0, 0, true])
        s[0] += int(r["label"] == true)
        s[1] += 1
    return [{"folder": k, "class": v[2], "correct": v[0], "total": v[1], "accuracy": v[0] / v[1]}
            for k, v in sorted(stats.items())]


def overall_accuracy(per_folder: Sequence[dict]) -> Optional[dict]:
    """Accuracy over every image of the class-named folders, and UAR (mean per-class recall over the classes that
    have images); None when no folder is named like a class."""
    if not per_folder:
        return None
    by_class: Dict[str, List[int]] = {}
    for r in per_folder:
        c = by_class.setdefault(r["class"], [0, 0])
        c[0] += r["correct"]
        c[1] += r["total"]
    n = sum(t for _, t in by_class.values())
    return {"images": n, "classes": len(by_class), "accuracy": sum(c for c, _ in by_class.values()) / n,
            "uar": float(np.mean([c / t for c, t in by_class.values()]))}


def _write_csv(path: str, rows: Sequence[dict], header: Optional[Sequence[str]] = None) -> None:

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(header or (rows[0].keys() if rows else ["source"])))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


DESCRIPTION = ("Detect, track and classify faces in images, folders, videos and webcams: expression and "
               "valence/arousal per face, written to predictions.csv / .json.")
EXAMPLES = """examples:
  python -m fer_keras.predict photo.jpg                      # every face: box, label, probabilities, valence/arousal
  python -m fer_keras.predict photos/ --annotate             # a folder; annotated copies in predictions/annotated/
  python -m fer_keras.predict clip.mp4 --largest-face        # a video, tracked; one face per frame
  python -m fer_keras.predict 0 --show                       # webcam 0 in a window
  python -m fer_keras.predict crops/ --no-detect --model fer2013   # face crops, another shipped model
  python -m fer_keras.predict photos/ --min-score 0.8 --out results/   # stricter detection, another folder
"""
# other tools' names for our options: an unknown flag names ours
SYNONYMS = {"--threshold": "--min-score", "--conf": "--min-score", "--confidence": "--min-score",
            "--output": "--out", "--output-dir": "--out", "--weights": "--model", "--device": "--backend",
            "--save": "--annotate", "--batch": "--batch-size"}


def build_parser() -> CliParser:
    """predict's arguments: inputs, model and detection here, video and output options in `_add_video_options`."""
    p = CliParser(prog="python -m fer_keras.predict", description=DESCRIPTION, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter, synonyms=SYNONYMS)
    p.add_argument("paths", nargs="+", help="images, folders, videos, or a webcam index")
    p.add_argument("--model", metavar="NAME|PATH", default="default",
                   help=f"a shipped model by name: {shipped_names_help()}; or a run folder, .keras or .tflite "
                        "file (default: default)")
    p.add_argument("--out", default="predictions",
                   help="output folder: predictions.csv/.json, errors.csv, annotated/ (default: predictions)")
    p.add_argument("--no-detect", action="store_true", help="inputs are already face crops")
    p.add_argument("--largest-face", action="store_true",
                   help="keep only the largest face of each image/frame (default: every face found; a labelled "
                        "folder is always scored by each image's largest face)")
    p.add_argument("--all-faces", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    p.add_argument("--padding", type=float, default=0.15, help="box padding, fraction of the face size")
    p.add_argument("--detector", default="auto", metavar="NAME|RUN",
                   help=f"face detector: {', '.join(DETECTORS.names())}, or a detection run (train_model.py --task "
                        "detection); default auto: YuNet (OpenCV FaceDetectorYN, shipped ONNX), dark photos through the "
                        "path chosen on val photos")
    p.add_argument("--min-score", type=float,
                   help="lowest detection score kept (default: each detector's own, e.g. YuNet's chosen on val photos)")
    p.add_argument("--min-face", type=int, default=None,
                   help="smallest face kept, px of its shorter side, any detector (default: every face found; the "
                        "Haar detector's own minimum is then 48, a FER crop)")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help="drop faces whose top expression probability is below P (e.g. 0.5: figurines, posters and "
                        "blurred background faces often read below it), counted in the summary (default: keep all)")
    p.add_argument("--batch-size", type=int, default=64, help="faces per model call (default: 64)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: the model's TFLite export through LiteRT when it has one (no TensorFlow import: "
                        "fast start), else Keras; keras / litert force one")
    p.add_argument("--tta", choices=["auto", *TTA], default="auto",
                   help="test-time augmentation, the views of evaluate_model.py --tta: flip = 2 views, crops = 4 "
                        "corner + centre crops and their mirrors, 10 views; auto (default) = the model's own "
                        "choice for images (see its model card) and none for videos (tracks are averaged over "
                        "--window frames instead)")
    p.add_argument("--calibration", choices=CALIBRATION_MODES, default="auto",
                   help="auto (default): the model's stored output prior, chosen on val data (see its model card); "
                        "none: the network's raw probabilities")
    _add_video_options(p)
    return p


def _add_video_options(p: CliParser) -> None:
    """Video, output and model-loading options (the order `--help` lists them in)."""
    p.add_argument("--window", type=int, default=5,
                   help="video: average each face's predictions over its last N frames (its own track only)")
    p.add_argument("--detect-every", type=int, default=5,
                   help="video: detect faces every N frames; between, each face's box moves at its track's "
                        "velocity (default 5: 0.2 s at 25 fps)")
    p.add_argument("--hysteresis", type=float, default=0.1,
                   help="video: a face's label changes only when another class's smoothed probability beats it "
                        "by this much (default 0.1; 0 = plain argmax)")
    p.add_argument("--confirm", type=int, default=CONFIRM, metavar="N",
                   help=f"video: a face track is reported once N detections found it (default {CONFIRM}; 1 = every "
                        "box); "
                        "tracks never confirmed are dropped and counted in the summary")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr")
    p.add_argument("--max-frames", type=int, help="video/webcam: stop after N frames")
    p.add_argument("--annotate", action="store_true", help="write annotated images/videos")
    p.add_argument("--save-crops", action="store_true", help="write the face crops (debugging)")
    p.add_argument("--show", action="store_true", help="live window for video/webcam when a display exists")
    p.add_argument("--labels", choices=list(PRESETS),
                   help="report in this label preset: the model's probabilities are mapped by class name (e.g. "
                        "an 8-class model as positive/negative with 2), and folder accuracy is scored in it "
                        "(default: the model's own classes)")
    p.add_argument("--verbose", "-v", action="store_true", help="print one line per face")
    p.add_argument("--unsafe-load", action="store_true",
                   help="load the model outside Keras safe mode (allows Lambda layers: only for files you trust)")


def run_inputs(a) -> Tuple[Results, FacePredictor, list]:
    """Predicts every input of the parsed arguments: (results, the predictor, the expanded inputs)."""
    model = resolve_model(a.model)
    check_options(padding=a.padding, batch_size=a.batch_size, window=a.window, detect_every=a.detect_every,
                  hysteresis=a.hysteresis, min_face=a.min_face, max_frames=a.max_frames, min_score=a.min_score,
                  confirm=a.confirm, min_confidence=a.min_confidence)
    if a.show and not can_show():
        why = "no display (DISPLAY is not set)" if not os.environ.get("DISPLAY") else \
            "this OpenCV has no GUI backend (opencv-python-headless; `pip install opencv-python` adds one)"
        print(f"note: --show needs a window and {why}; continuing without it", file=sys.stderr)
    inputs = expand_inputs(a.paths)
    missing = [path for kind, path in inputs if kind == "missing"]
    if missing and len(missing) == len(inputs):
        raise DataError(f"{missing[0]}: no such file, folder or webcam index" if len(missing) == 1 else
                        f"none of the {len(missing)} inputs exists (first: {missing[0]})")
    predictor = FacePredictor(model, a.batch_size, safe_mode=not a.unsafe_load, tta=a.tta, labels=a.labels,
                              backend=a.backend, calibration=a.calibration)
    if not predictor.va_trained:
        print(f"note: {VA_UNTRAINED_NOTE}; the valence/arousal columns are left empty")
    detector = whole_image if a.no_detect else make_detector(a.detector, a.min_face, a.min_score)
    os.makedirs(a.out, exist_ok=True)
    results = Results()
    for path in missing:
        results.errors.append((path, "no such file, folder or webcam index"))
        print(f"warning: {path}: no such file, folder or webcam index (skipped; listed in errors.csv)",
              file=sys.stderr)
    images = [path for kind, path in inputs if kind == "image"]
    if images:
        predict_images(predictor, images, detector, a.padding, not a.largest_face, results, a.out, a.annotate,
                       a.save_crops, progress=not a.quiet, min_confidence=a.min_confidence)
    # Videos: `--tta auto` means no views. A face is seen in many frames and its track is averaged over --window
    # frames, and the views would cost the frame rate (crops: 10 model calls per face and frame).
    video_predictor = predictor.with_tta("none") if a.tta == "auto" and any(
        kind in ("video", "webcam") for kind, _ in inputs) else predictor
    for kind, path in inputs:
        if kind in ("video", "webcam"):
            predict_video(video_predictor, path, detector, a.padding, a.window, results, a.out, a.annotate, a.show,
                          a.max_frames, a.detect_every, a.largest_face, a.hysteresis, progress=not a.quiet,
                          confirm=a.confirm, min_confidence=a.min_confidence)
    return results, predictor, inputs


def write_outputs(a, results: Results) -> None:
    """predictions.csv / .json and errors.csv in --out; one line per face with --verbose."""
    _write_csv(os.path.join(a.out, "predictions.csv"), results.rows)
    atomic_write_text(os.path.join(a.out, "predictions.json"), json.dumps(results.rows, indent=1))
    _write_csv(os.path.join(a.out, "errors.csv"), [{"source": s, "problem": e} for s, e in results.errors],
               ["source", "problem"])
    if a.verbose:
        for r in results.rows:
            va = "" if r["valence"] is None else f" valence {r['valence']:+.2f} arousal {r['arousal']:+.2f}"
            print(f"{r['source']}{'' if r['frame'] == '' else '#' + str(r['frame'])} face {r['face']}: "
                  f"{r['label']} {r['confidence']:.2f}{va}")


def score_folders(a, results: Results, predictor: FacePredictor) -> None:
    """Folders named like classes (or listed in a labels file) are scored: folder_accuracy.csv, accuracy.json."""
    listed: Dict[str, str] = {}
    for folder in sorted({os.path.dirname(os.path.abspath(r["source"])) for r in results.rows if r["frame"] == ""}):
        try:
            listed.update(read_folder_labels(folder))
        except DataError as e:  # the predictions stand; only the scoring is skipped
            print(f"note: {e}; not scored")
    acc = folder_accuracy(results.rows, predictor.class_names, a.labels, listed)

    class_named = {os.path.dirname(r["source"]) for r in results.rows if r["frame"] == ""
                   and normalize_name(os.path.basename(os.path.dirname(r["source"]))) is not None}
    unscored = sorted(class_named - {r["folder"] for r in acc})
    if unscored:
        print(f"note: {len(unscored)} class-named folder(s) not scored, their class is not in the "
              f"{len(predictor.class_names)}-class preset (e.g. {os.path.basename(unscored[0])}/); "
              "choose a preset that has it with --labels 2|4|5|7|8")
    if acc:
        _write_csv(os.path.join(a.out, "folder_accuracy.csv"), acc)
        for r in acc:
            print(f"{r['folder']}: {r['class']} {r['correct']}/{r['total']} = {r['accuracy']:.3f}")
        total = overall_accuracy(acc)
        atomic_write_text(os.path.join(a.out, "accuracy.json"), json.dumps(
            {**total, "preset": a.labels or str(len(predictor.class_names))}, indent=1))
        print(f"overall: accuracy {total['accuracy']:.4f}, UAR {total['uar']:.4f} over {total['images']} images "
              f"in {total['classes']} classes (preset {a.labels or len(predictor.class_names)})")


def summary_line(a, results: Results, inputs: list) -> str:
    """The last line predict prints: faces, inputs, what was dropped, problems, where it wrote."""
    dropped = (f"; {results.unconfirmed_tracks} unconfirmed video tracks dropped ({results.unconfirmed_rows} rows)"
               if results.unconfirmed_tracks else "")
    if results.low_confidence:
        dropped += f"; {results.low_confidence} faces below --min-confidence {a.min_confidence:g} dropped"
    return (f"{len(results.rows)} faces from {len(inputs)} inputs{dropped}; {len(results.errors)} problems "
            f"(see {a.out}/errors.csv); wrote {a.out}/predictions.csv")


@cli_main(tensorflow=False)
def main(argv=None):
    a = build_parser().parse_args(argv)
    results, predictor, inputs = run_inputs(a)
    write_outputs(a, results)
    score_folders(a, results, predictor)
    print(summary_line(a, results, inputs))
    return results


if __name__ == "__main__":
    main()

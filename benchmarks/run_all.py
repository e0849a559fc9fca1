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

One module per section in `benchmarks/suite/` (what they share: `suite/common.py`; RESULTS.md: `suite/results.py`);
this file parses the flags, runs the sections and dispatches the worker subprocesses. It installs nothing: the `fer`
rows need `pip install --no-deps -r requirements-bench.txt`.

Medians of `--repeats` timed repeats after a warm-up; each training cell runs in a fresh subprocess so that the
precision policy and XLA state of one cell cannot leak into the next.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: the suite package

from suite import common as C  # noqa: E402
from suite.common import ROOT, SECTIONS  # noqa: E402
from suite.inference import bench_inference, worker_fer_package, worker_predict_inprocess  # noqa: E402
from suite.memory import bench_memory, worker_memory  # noqa: E402
from suite.pipeline import bench_pipeline, worker_pipeline  # noqa: E402
from suite.results import render  # noqa: E402
from suite.detection import bench_detection  # noqa: E402
from suite.time_to_accuracy import bench_time_to_accuracy  # noqa: E402
from suite.training import TRAIN_MODELS, bench_backbones, bench_training, worker_train  # noqa: E402


WORKERS = {"train": lambda a: worker_train(a[0], int(a[1]), int(a[2]), *a[3:5]),
           "pipeline": lambda a: worker_pipeline(a[0], a[1], int(a[2]), int(a[3]), *a[4:]),  # + config overrides
           "memory": lambda a: worker_memory(a[0], a[1], int(a[2])),
           "predict_inprocess": lambda a: worker_predict_inprocess(a[0], a[1], int(a[2])),
           "fer_package": lambda a: worker_fer_package(a[0], int(a[1]))}
BENCHES = {"training": bench_training, "pipeline": bench_pipeline, "memory": bench_memory,
           "inference": bench_inference, "time_to_accuracy": bench_time_to_accuracy, "detection": bench_detection,
           "backbones": bench_backbones}


def main(argv=None):
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
    p.add_argument("--results-dir", default=C.RESULTS_DIR, help="where the JSON go (RESULTS.md goes next to it)")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    C.RESULTS_DIR = os.path.abspath(a.results_dir)
    if a.worker:
        print(json.dumps(WORKERS[a.worker[0]](a.worker[1:])), flush=True)
        return
    if not a.render_only:
        for s in (a.only.split(",") if a.only else SECTIONS):
            if s not in BENCHES:
                p.error(f"unknown section {s!r}; valid: {', '.join(SECTIONS)}")
            t0 = time.perf_counter()
            C.save(s, BENCHES[s](a))
            print(f"== {s} done in {time.perf_counter() - t0:.0f} s", flush=True)
    from fer_keras.io_utils import atomic_write_text

    out = os.path.join(os.path.dirname(C.RESULTS_DIR), "RESULTS.md")
    atomic_write_text(out, render())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

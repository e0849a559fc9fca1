"""KerasHub vs KerasCV RetinaNet on generated dark scenes: AP@0.5 after the same number of training steps.

    .venv/bin/pip install --no-deps keras-cv==0.9.0 dm-tree   # KerasCV is only needed for this comparison
    python benchmarks/detector_libs.py [--steps 120] [--out benchmarks/results/detector_libs.json]

Both detectors get the same backbone shape (basic-block ResNet, filters 64/64/128/256, one block per stage, built
from explicit arguments: nothing is downloaded), two 3x3 convs per head, the RetinaNet paper's head initialisation
(kernels N(0, 0.01), classification bias -log(99), box bias 0; `--stock-init` keeps each library's own), the same
batches (320x256 letterboxed scenes, batch 8, box-aware augmentation), Adam 1e-3 with clipnorm 10 and NMS at
score 0.05 / IoU 0.5. Each library keeps its own feature pyramid, anchors, label encoder and losses.

KerasCV 0.9 imports `tensorflow_datasets` at import time, only for its dataset loaders; when it is not installed an
empty module stands in for it (no dataset loader is used here).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SIZE, BATCH = (320, 256), 8


def build_kerashub(stock: bool):
    from fer_keras.detection import retinanet as R

    det = R.build_retinanet("resnet10", head_convs=2, score_threshold=0.05)
    if stock:  # rebuild without our re-initialisation
        import keras_hub

        det = keras_hub.models.RetinaNetObjectDetector(
            backbone=det.backbone, num_classes=1, bounding_box_format="xyxy", pre_logits_num_conv_layers=2,
            prediction_decoder=keras_hub.layers.NonMaxSuppression(bounding_box_format="xyxy", from_logits=True,
                                                                   confidence_threshold=0.05))
    return det, "labels"


def build_kerascv(stock: bool):
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        sys.modules["tensorflow_datasets"] = types.ModuleType("tensorflow_datasets")
    import keras
    import keras_cv
    from keras_cv.src.models.object_detection.retinanet.prediction_head import PredictionHead

    backbone = keras_cv.models.ResNetBackbone(stackwise_filters=[64, 64, 128, 256], stackwise_blocks=[1, 1, 1, 1],
                                              stackwise_strides=[1, 2, 2, 2], include_rescaling=False,
                                              block_type="basic_block", input_shape=(None, None, 3))
    cls_head = PredictionHead(9, keras.initializers.Constant(-math.log(99.0)), num_conv_layers=2)
    box_head = PredictionHead(36, keras.initializers.Zeros(), num_conv_layers=2)
    det = keras_cv.models.RetinaNet(
        backbone=backbone, num_classes=1, bounding_box_format="xyxy", classification_head=cls_head,
        box_head=box_head, prediction_decoder=keras_cv.layers.NonMaxSuppression(
            bounding_box_format="xyxy", from_logits=True, confidence_threshold=0.05, iou_threshold=0.5))
    if not stock:
        from fer_keras.detection.retinanet import init_head_layers

        init_head_layers(box_head, cls_head)
    return det, "classes"


def run(lib: str, steps: int, stock: bool, train, val) -> dict:
    import keras
    import tensorflow as tf

    from fer_keras.detection import metrics as M
    from fer_keras.detection.data import DetAugment, detection_batches

    keras.utils.set_random_seed(0)
    det, label_key = (build_kerashub if lib == "kerashub" else build_kerascv)(stock)
    opt = keras.optimizers.Adam(1e-3, clipnorm=10.0)
    if lib == "kerashub":
        det.compile(optimizer=opt)
    else:
        det.compile(optimizer=opt, classification_loss="focal", box_loss="smoothl1")

    def gen():
        epoch = 0
        while True:
            for x, y in detection_batches(train, SIZE, BATCH, True, DetAugment(), seed=0, epoch=epoch):
                yield x / 255.0, {"boxes": y["boxes"], label_key: y["classes"]}
            epoch += 1

    spec = (tf.TensorSpec((BATCH, SIZE[1], SIZE[0], 3), tf.float32),
            {"boxes": tf.TensorSpec((BATCH, 64, 4), tf.float32), label_key: tf.TensorSpec((BATCH, 64), tf.float32)})
    t0 = time.time()
    hist = det.fit(tf.data.Dataset.from_generator(gen, output_signature=spec), steps_per_epoch=steps, epochs=1,
                   verbose=0)
    train_s = time.time() - t0
    dets, gts = [], []
    for x, y in detection_batches(val, SIZE, BATCH, False):
        out = det.predict(x / 255.0, batch_size=BATCH, verbose=0)
        for i in range(len(x)):
            k = int(out["num_detections"][i])
            dets.append(np.c_[np.asarray(out["boxes"][i][:k]), np.asarray(out["confidence"][i][:k])])
            g = y["boxes"][i]
            gts.append(g[g[:, 0] >= 0])
    m = M.detection_metrics(dets[:len(val)], gts[:len(val)])
    _, is_tp, _, n_gt = M.match([d[d[:, 4] >= 0.5] for d in dets[:len(val)]], gts[:len(val)])
    tp, n_det = int(is_tp.sum()), len(is_tp)
    return {"library": lib, "init": "stock" if stock else "paper", "steps": steps, "params": det.count_params(),
            "train_seconds": round(train_s, 1), "final_loss": float(hist.history["loss"][-1]),
            "ap50": m["ap50"], "ap50_95": m["ap50_95"], "recall@1fppi": m["recall@1fppi"],
            "precision@0.5score": tp / max(n_det, 1), "recall@0.5score": tp / max(n_gt, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--libs", nargs="+", default=["kerashub", "kerascv"])
    p.add_argument("--stock-init", action="store_true", help="keep each library's own head initialisation")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "detector_libs.json"))
    a = p.parse_args(argv)
    from fer_keras.detection.data import read_darkface, write_dark_scenes

    root = os.path.join(ROOT, "data", "bench", "dark-scenes")
    train = read_darkface(write_dark_scenes(os.path.join(root, "train"), n=240, seed=0))
    val = read_darkface(write_dark_scenes(os.path.join(root, "val"), n=48, seed=1))
    results = []
    for lib in a.libs:
        r = run(lib, a.steps, a.stock_init, train, val)
        print(json.dumps(r))
        results.append(r)
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out + ".tmp", "w") as f:  # written after each library, so a stopped run keeps what it has
            json.dump({"command": "python benchmarks/detector_libs.py " + " ".join(argv or sys.argv[1:]),
                       "machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
                       "results": results}, f, indent=2)
        os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()

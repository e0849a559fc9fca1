"""RetinaNet face detector. All KerasHub-specific code lives in this module, so the library can be swapped.

KerasHub's `RetinaNetObjectDetector` (the maintained successor of KerasCV's RetinaNet) builds offline from explicit
backbone arguments. Its stock head initialisation does not train from scratch: the classification prior bias sits
on the box head and the kernels use std 0.05. `init_heads` applies the RetinaNet paper's initialisation (kernels
N(0, 0.01), classification bias -log((1 - pi) / pi), box bias 0). Its NMS decoder needs a fixed batch size: callers
pad the last batch (`detection_batches(pad_last=True)`, `predict_boxes`).

Boxes are `xyxy` pixels of the network input (the letterboxed image); model inputs are float images in 0..1.
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from typing import List, Optional, Sequence

import numpy as np

from fer_keras.errors import ConfigError
from fer_keras.io_utils import atomic_path

# Small ResNets (basic blocks) for CPU training; KerasHub requires 64 filters in the first stage.
BACKBONES = {
    "resnet10": {"stackwise_num_filters": [64, 64, 128, 256], "stackwise_num_blocks": [1, 1, 1, 1]},
    "resnet18": {"stackwise_num_filters": [64, 128, 256, 512], "stackwise_num_blocks": [2, 2, 2, 2]},
}
STRIDE = 32  # the coarsest pyramid level (P5): input sides must be multiples of it


def check_input_size(width: int, height: int) -> None:
    """Raises a one-line error unless both sides are positive multiples of the coarsest stride."""
    if width <= 0 or height <= 0 or width % STRIDE or height % STRIDE:
        raise ConfigError(f"detection input {width}x{height}: both sides must be positive multiples of {STRIDE} "
                          "(the feature pyramid halves them five times)")


def init_heads(detector, prior_probability: float = 0.01, std: float = 0.01, seed: int = 0) -> None:
    """RetinaNet paper initialisation of both prediction heads of a KerasHub detector (in place)."""
    init_head_layers(detector.box_head, detector.classification_head, prior_probability, std, seed)


def init_head_layers(box_head, classification_head, prior_probability: float = 0.01, std: float = 0.01,
                     seed: int = 0) -> None:
    """Kernels N(0, std), classification bias -log((1 - pi) / pi), other biases 0, for any RetinaNet head pair
    with `conv_layers` and `prediction_layer` (KerasHub's and KerasCV's)."""
    rng = np.random.default_rng(seed)
    for head, final_bias in ((box_head, 0.0),
                             (classification_head, -math.log((1 - prior_probability) / prior_probability))):
        for layer in list(head.conv_layers) + [head.prediction_layer]:
            layer.kernel.assign(rng.normal(0.0, std, layer.kernel.shape).astype("float32"))
            layer.bias.assign(np.full(layer.bias.shape, final_bias if layer is head.prediction_layer else 0.0,
                                      "float32"))


def build_retinanet(backbone: str = "resnet10", num_classes: int = 1, head_convs: int = 2,
                    prior_probability: float = 0.01, score_threshold: float = 0.05, iou_threshold: float = 0.5,
                    max_detections: int = 100, weights: Optional[str] = None, seed: int = 0, min_level: int = 3,
                    max_level: int = 5, anchor_size: float = 4.0, anchor_scales: int = 3,
                    anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0), positive_iou: float = 0.5,
                    negative_iou: float = 0.4, force_match: bool = False):
    """Builds a KerasHub RetinaNet with paper head initialisation.

    The defaults are KerasHub's (levels P3-P5, 9 anchors per location of 32-406 px). Tiny faces need smaller
    anchors: `anchor_size=1` gives 8-50 px over P3-P5, and `force_match` gives every face its best anchor even when
    their IoU is below `positive_iou` (a 5 px face overlaps an 8 px anchor at IoU 0.39 at best).

    Args:
        backbone: a key of `BACKBONES`.
        num_classes: object classes (1: face).
        head_convs: 3x3 conv layers in each head before the prediction layer (the paper uses 4).
        prior_probability: initial foreground probability of every anchor.
        score_threshold, iou_threshold, max_detections: the NMS decoder used by `predict`.
        weights: optional local `.weights.h5` file of the same architecture (nothing is downloaded).
        seed: head initialisation seed.
        min_level, max_level: pyramid levels (stride 2**level).
        anchor_size: base anchor side as a multiple of the stride.
        anchor_scales: anchor sizes per octave.
        anchor_ratios: anchor aspect ratios.
        positive_iou, negative_iou: the label encoder's IoU thresholds (between them an anchor is ignored).
        force_match: match every face to its best anchor.
    """
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown detection backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
    if not 2 <= min_level <= max_level or max_level < 5:
        raise ConfigError(f"detection levels P{min_level}-P{max_level}: need 2 <= min_level <= max_level and "
                          "max_level >= 5 (the backbone's last stage is P5)")
    if negative_iou > positive_iou:
        raise ConfigError(f"detection.negative_iou {negative_iou} is above detection.positive_iou {positive_iou}")
    import keras_hub
    from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block", use_pre_activation=False, image_shape=(None, None, 3), **BACKBONES[backbone])
    pyramid = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=min_level, max_level=max_level,
                                                 use_p5=False, image_shape=(None, None, 3))
    anchors = keras_hub.layers.AnchorGenerator("xyxy", min_level=min_level, max_level=max_level,
                                               num_scales=anchor_scales, aspect_ratios=list(anchor_ratios),
                                               anchor_size=anchor_size)
    encoder_kw = dict(positive_threshold=positive_iou, negative_threshold=negative_iou)
    if force_match:  # not in the encoder's config: it only matters for training, which builds it here
        encoder_kw["box_matcher_force_match_for_each_col"] = True
    labels = RetinaNetLabelEncoder(anchors, bounding_box_format="xyxy", encoding_format="center_xywh", **encoder_kw)
    decoder = keras_hub.layers.NonMaxSuppression(bounding_box_format="xyxy", from_logits=True,
                                                 iou_threshold=iou_threshold, confidence_threshold=score_threshold,
                                                 max_detections=max_detections)
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=pyramid, num_classes=num_classes, bounding_box_format="xyxy", anchor_generator=anchors,
        label_encoder=labels, pre_logits_num_conv_layers=head_convs, prediction_decoder=decoder)
    init_heads(detector, prior_probability, seed=seed)
    if weights:
        try:
            detector.load_weights(weights)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{weights}: cannot load detector weights ({str(e).splitlines()[0]})") from None
    return detector


def build_kwargs(det) -> dict:
    """`build_retinanet` arguments from a `DetectionConfig` (everything but `weights` and `seed`)."""
    return dict(backbone=det.backbone, head_convs=det.head_convs, prior_probability=det.prior_probability,
                score_threshold=det.score_threshold, iou_threshold=det.iou_threshold,
                max_detections=det.max_detections, min_level=det.min_level, max_level=det.max_level,
                anchor_size=det.anchor_size, anchor_scales=det.anchor_scales, anchor_ratios=list(det.anchor_ratios),
                positive_iou=det.positive_iou, negative_iou=det.negative_iou, force_match=det.force_match)


def save_compact(detector, build: dict, inference: dict, path: str) -> str:
    """Writes the detector as float16 weights, its `build_retinanet` arguments and its inference settings
    (`image_width`, `image_height`, `min_score`, `test_scales`, `iou_threshold`, `enhancement`) in one `.npz`:
    half the size of `.keras`, which keeps the shipped detector small. Written atomically."""
    import json


    arrays = {f"w{i:04d}": np.asarray(v.numpy(), np.float16) for i, v in enumerate(detector.weights)}
    meta = json.dumps({"build": build, "inference": inference})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(meta), **arrays)
    return path


def load_compact(path: str):
    """Rebuilds a detector written by `save_compact`; returns (detector, inference settings). Errors name the file."""
    import json

    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = [z[k] for k in sorted(k for k in z.files if k.startswith("w"))]
        build, inference = meta["build"], meta["inference"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a compact detector file ({str(e).splitlines()[0]})") from None
    detector = build_retinanet(**build)
    if len(arrays) != len(detector.weights):
        raise ConfigError(f"{path}: {len(arrays)} weight arrays, the detector it describes has "
                          f"{len(detector.weights)}")
    for v, a in zip(detector.weights, arrays):
        if tuple(v.shape) != a.shape:
            raise ConfigError(f"{path}: weight {v.path} has shape {a.shape}, expected {tuple(v.shape)}")
        v.assign(a.astype(np.float32))
    return detector, inference


def compile_retinanet(detector, optimizer) -> None:
    """Focal loss for classes and Huber for box deltas (KerasHub's defaults), normalised by positive anchors."""
    detector.compile(optimizer=optimizer)


def load_detector(path: str):
    """Loads a saved detector (`.keras`); the error names the file."""
    import keras
    import keras_hub  # noqa: F401  (registers the KerasHub classes)

    try:
        with warnings.catch_warnings():  # KerasHub tasks compile on construction; the saved optimizer is not needed
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.saving.load_model(path, compile=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load the detector ({str(e).splitlines()[0]})") from None


_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _decoder(detector):
    """A compiled forward pass + NMS decode per detector (Keras `predict` rebuilds its data adapter on every call:
    2x slower for one image)."""
    fn = _DECODERS.get(detector)
    if fn is None:
        import tensorflow as tf

        @tf.function  # one graph per input shape: KerasHub's anchor generator needs static sizes
        def fn(x):
            return detector.decode_predictions(detector(x, training=False), x)

        _DECODERS[detector] = fn
    return fn


def predict_boxes(detector, images: np.ndarray, batch_size: int) -> List[np.ndarray]:
    """Runs the detector with NMS on float images in 0..1; returns per image an (n, 5) array x1 y1 x2 y2 score.

    The batch is padded to `batch_size` (the NMS decoder needs a fixed batch size).
    """
    out_all: List[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        n = len(x)
        if n < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - n,) + x.shape[1:], x.dtype)])
        out = _decoder(detector)(x)
        for i in range(n):
            k = int(out["num_detections"][i])
            b = np.asarray(out["boxes"][i][:k], np.float32)
            s = np.asarray(out["confidence"][i][:k], np.float32)
            out_all.append(np.concatenate([b, s[:, None]], axis=1))
    return out_all


def export_savedmodel(detector, width: int, height: int, enhancement: str, out_dir: str) -> str:
    """Writes a SavedModel whose `serving_default` takes one uint8 RGB image (1, H, W, 3) of any size and returns
    NMS-decoded `boxes` (1, max_detections, 4; x1 y1 x2 y2 in the input image's pixels), `scores` and
    `num_detections`. Letterboxing, the optional gamma enhancement and the 0..1 scaling happen inside the graph."""
    import shutil

    import keras
    import tensorflow as tf

    if enhancement == "clahe":
        raise ConfigError("a detector trained with detection.enhancement=clahe cannot be exported with the "
                          "enhancement inside the graph (CLAHE is an OpenCV op); apply it before serving")

    def serve(images):
        x = tf.cast(images, tf.float32)
        h0, w0 = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
        if enhancement == "gamma":
            x = 255.0 * tf.pow(x / 255.0, 0.5)
        s = tf.minimum(width / w0, height / h0)
        nh = tf.maximum(1, tf.cast(tf.round(h0 * s), tf.int32))
        nw = tf.maximum(1, tf.cast(tf.round(w0 * s), tf.int32))
        x = tf.image.resize(x, tf.stack([nh, nw]), method="area", antialias=True)
        x = tf.image.pad_to_bounding_box(x, 0, 0, height, width) / 255.0  # bottom/right padding, as in training
        x = tf.ensure_shape(x, [1, height, width, 3])
        raw = detector(x, training=False)
        out = detector.decode_predictions(raw, x)
        return {"boxes": tf.cast(out["boxes"], tf.float32) / s, "scores": tf.cast(out["confidence"], tf.float32),
                "num_detections": tf.cast(out["num_detections"], tf.int32)}

    archive = keras.export.ExportArchive()
    archive.track(detector)
    archive.add_endpoint("serving_default", serve,
                         input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="images")])
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(tmp, verbose=False)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir

"""YuNet's training math for detection runs (the fit itself: `yunet_run.py`): the head's targets, SimOTA label
assignment and the losses of the reference (`../shared/models/yunet/reference`: mmdet's `YuNet_Head`, `SimOTAAssigner`,
`EIoULoss`), written here for Keras.

- Priors: one point per cell of each level, at (col, row) * stride (no offset) for decoding; assignment uses the
  cell centres ((col, row) + 0.5) * stride, as the reference does.
- SimOTA (`simota_assign`): candidates are priors whose centre lies in a face box or within `center_radius` strides
  of its centre; cost = -log(sqrt(cls * obj)) + 3 * -log(IoU) (+ a large cost unless both inside the box and near its
  centre); each face takes its `dynamic k` = sum of its 10 best IoUs (at least 1) cheapest priors; a prior claimed
  twice goes to the face it is cheapest for.
- Losses, summed and divided by the number of positives in the batch: sigmoid cross-entropy of the class logit
  against the IoU of the positive's predicted box (positives only), of the objectness logit against 1 / 0 (all
  priors), and 5 x smooth EIoU of the positives' decoded boxes. The landmark loss (smooth L1, weight 0.1) needs
  landmark labels, which the face sets here do not have: the landmark head is frozen instead, so the landmarks of
  the fine-tuned model come from the pretrained head on the fine-tuned features.

Assignment needs the model's current predictions. It runs in the input pipeline on the weights of the moment the
batch is drawn (at most the prefetch depth, 2 steps, behind the step that uses it), which lets `fit` and the run
callbacks (checkpoint, history, resume, time limit) drive training as for every other run.
"""

from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from fer_keras.detection.metrics import iou_matrix
from fer_keras.detection.yunet import inference_model, load_trained
from fer_keras.detection.yunet_lite import STRIDES

__all__ = ["load_trained", "inference_model"]  # re-exported: a run's YuNet loads as yunet.load_trained does
FLAT = 16  # per prior: cls, obj, bbox (4), kps (10)
TARGET = 6  # per prior: positive, IoU target, face box (4)
DEFAULT_INIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained", "yunet",
                            "yunet_n.pth")


def grid_priors(height: int, width: int) -> np.ndarray:
    """(P, 3) priors x, y, stride of a `height` x `width` input, levels in `STRIDES` order, rows then columns (the
    order of `build_training_model`'s `flat` output)."""
    out = []
    for s in STRIDES:
        ys, xs = np.mgrid[0:height // s, 0:width // s]
        out.append(np.stack([xs.ravel() * s, ys.ravel() * s, np.full(xs.size, s)], 1))
    return np.concatenate(out).astype(np.float32)


def build_training_model(base):
    """YuNet with one output `flat` (B, P, 16): the per-level outputs of `base` (`fer_keras.detection.yunet`)
    concatenated per prior (cls, obj, bbox, kps) over all levels. It shares `base`'s layers."""
    import keras
    from keras import layers

    parts = []
    for s in STRIDES:
        level = layers.Concatenate(axis=-1, name=f"level_{s}")(
            [base.get_layer(f"{n}_{s}").output for n in ("cls", "obj", "bbox", "kps")])
        parts.append(layers.Reshape((-1, FLAT), name=f"flat_{s}")(level))
    flat = layers.Concatenate(axis=1, name="flat")(parts)
    return keras.Model(base.input, flat, name="yunet_train")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def decode_flat(flat: np.ndarray, priors: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One image's `flat` output (P, 16) → (scores cls * obj (P,), boxes x1 y1 x2 y2 (P, 4))."""
    scores = _sigmoid(flat[:, 0]) * _sigmoid(flat[:, 1])
    xy = flat[:, 2:4] * priors[:, 2:3] + priors[:, :2]
    wh = np.exp(np.clip(flat[:, 4:6], -20, 20)) * priors[:, 2:3]
    return scores, np.concatenate([xy - wh / 2, xy + wh / 2], 1)


def simota_assign(scores: np.ndarray, priors: np.ndarray, boxes: np.ndarray, gt: np.ndarray,
                  center_radius: float = 2.5, candidate_topk: int = 10, iou_weight: float = 3.0,
                  cls_weight: float = 1.0, eps: float = 1e-7) -> Tuple[np.ndarray, np.ndarray]:
    """SimOTA label assignment for one image (mmdet's `SimOTAAssigner`, one class).

    Args:
        scores: (P,) predicted cls * obj probabilities.
        priors: (P, 3) x, y, stride (cell corners; the cell centres are used here, as the reference does).
        boxes: (P, 4) decoded predicted boxes.
        gt: (N, 4) face boxes x1 y1 x2 y2.

    Returns:
        (face index per prior, -1 for background (P,), IoU of each positive's predicted box with its face (P,)).
    """
    P = len(priors)
    gt_index, ious_out = np.full(P, -1, np.int64), np.zeros(P, np.float32)
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    if not len(gt) or not P:
        return gt_index, ious_out
    s = priors[:, 2:3]
    cx, cy = priors[:, 0:1] + 0.5 * s, priors[:, 1:2] + 0.5 * s
    in_box = (cx > gt[:, 0]) & (cy > gt[:, 1]) & (cx < gt[:, 2]) & (cy < gt[:, 3])  # (P, N)
    gcx, gcy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    r = center_radius * s
    in_ctr = (cx > gcx - r) & (cx < gcx + r) & (cy > gcy - r) & (cy < gcy + r)
    valid = np.nonzero(in_box.any(1) | in_ctr.any(1))[0]
    if not len(valid):
        return gt_index, ious_out
    ious = iou_matrix(boxes[valid], gt)  # (V, N)
    p = np.sqrt(np.clip(scores[valid], eps, 1.0))
    cost = (cls_weight * -np.log(p)[:, None] + iou_weight * -np.log(ious + eps)
            + (~(in_box[valid] & in_ctr[valid])) * 1e5)
    k = min(candidate_topk, len(valid))
    dynamic_k = np.maximum(np.sort(ious, axis=0)[::-1][:k].sum(0).astype(np.int64), 1)
    match = np.zeros(cost.shape, bool)
    for j, kj in enumerate(dynamic_k):
        match[np.argsort(cost[:, j], kind="stable")[:kj], j] = True
    multi = np.nonzero(match.sum(1) > 1)[0]
    if len(multi):
        best = cost[multi].argmin(1)
        match[multi] = False
        match[multi, best] = True
    fg = np.nonzero(match.any(1))[0]
    j = match[fg].argmax(1)
    gt_index[valid[fg]] = j
    ious_out[valid[fg]] = ious[fg, j]
    return gt_index, ious_out


def targets_for_batch(flat: np.ndarray, priors: np.ndarray, faces: List[np.ndarray], **assign_kw) -> np.ndarray:
    """(B, P, 6) training targets (positive, IoU target, face box) from a batch's `flat` predictions (B, P, 16)."""
    out = np.zeros((len(flat), len(priors), TARGET), np.float32)
    for i, (f, gt) in enumerate(zip(flat, faces)):
        scores, boxes = decode_flat(f, priors)
        idx, ious = simota_assign(scores, priors, boxes, gt, **assign_kw)
        pos = idx >= 0
        out[i, pos, 0], out[i, pos, 1] = 1.0, ious[pos]
        out[i, pos, 2:6] = np.asarray(gt, np.float32).reshape(-1, 4)[idx[pos]]
    return out


def eiou_loss(pred, target, smooth_point: float = 0.1, eps: float = 1e-7):
    """Smooth Extended-IoU loss per box pair (the reference's `eiou_loss`), boxes x1 y1 x2 y2 (..., 4)."""
    from keras import ops

    px1, py1, px2, py2 = (pred[..., i] for i in range(4))
    tx1, ty1, tx2, ty2 = (target[..., i] for i in range(4))
    ex1, ey1 = ops.minimum(px1, tx1), ops.minimum(py1, ty1)
    ix1, iy1, ix2, iy2 = ops.maximum(px1, tx1), ops.maximum(py1, ty1), ops.minimum(px2, tx2), ops.minimum(py2, ty2)
    xmin, ymin, xmax, ymax = ops.minimum(ix1, ix2), ops.minimum(iy1, iy2), ops.maximum(ix1, ix2), ops.maximum(iy1, iy2)
    inter = ((ix2 - ex1) * (iy2 - ey1) + (xmin - ex1) * (ymin - ey1) - (ix1 - ex1) * (ymax - ey1)
             - (xmax - ex1) * (iy1 - ey1))
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter + eps
    d = 1.0 - inter / union
    small = ops.cast(d < smooth_point, d.dtype)
    return 0.5 * small * d ** 2 / smooth_point + (1.0 - small) * (d - 0.5 * smooth_point)


def make_loss(priors: np.ndarray, box_weight: float = 5.0):
    """The Keras loss of `build_training_model` for inputs whose priors are `priors` (y_true: `targets_for_batch`).

    Per image it returns (sum of its losses) * B / (positives in the batch), so Keras' mean over the batch is the
    reference's sum over the batch divided by the number of positives."""
    from keras import ops

    pr = ops.convert_to_tensor(priors)

    def yunet_loss(y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        pos, iou_t, gt = y_true[..., 0], y_true[..., 1], y_true[..., 2:6]
        xy = y_pred[..., 2:4] * pr[:, 2:3] + pr[:, :2]
        wh = ops.exp(ops.minimum(y_pred[..., 4:6], 20.0)) * pr[:, 2:3]
        box = ops.concatenate([xy - wh / 2, xy + wh / 2], axis=-1)
        # Background priors get their own box as target so the EIoU term (masked out) stays finite.
        safe_gt = ops.where(pos[..., None] > 0, gt, ops.stop_gradient(box))
        l_box = box_weight * eiou_loss(box, safe_gt) * pos
        l_obj = _bce_logits(y_pred[..., 1], pos)
        l_cls = _bce_logits(y_pred[..., 0], iou_t) * pos
        per_image = ops.sum(l_box + l_obj + l_cls, axis=-1)
        n = ops.cast(ops.shape(y_true)[0], "float32")
        return per_image * n / ops.maximum(ops.sum(pos), 1.0)

    return yunet_loss


def _bce_logits(logits, target):
    """Sigmoid cross-entropy with logits, elementwise (numerically stable form)."""
    from keras import ops

    return ops.maximum(logits, 0.0) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))


# === Runs ===



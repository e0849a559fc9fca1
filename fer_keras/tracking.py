"""Face tracks across video frames: IoU association, per-track smoothing and label hysteresis.

A video is not a pile of photos: the same face should keep one id, its expression should be smoothed over its own
past frames only (never mixed with another face's), and its label should not flip on every small wobble of the
probabilities. `FaceTracker` does the three with plain NumPy (SciPy's solver only for crowds), so it is cheap next
to detection.

Example:
    >>> tracker = FaceTracker(window=5)
    >>> ids = tracker.update(boxes)               # one id per box, new ids for new faces
    >>> label, probs, va = tracker.smooth(ids[0], probs_of_face0, va_of_face0)
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from fer_keras.detection.metrics import iou_matrix


@dataclass
class Track:
    """One face over time."""

    id: int
    box: np.ndarray  # x1 y1 x2 y2 of the last association
    last_frame: int
    probs: Deque[np.ndarray] = field(default_factory=deque)
    vas: Deque[np.ndarray] = field(default_factory=deque)
    label: Optional[int] = None  # the label shown (changes only past the hysteresis margin)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box shift per frame between detections
    hits: int = 0  # detections associated with it


def best_matching(sim: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the one-to-one matching with the largest total `sim` (as `scipy.optimize.
    linear_sum_assignment(-sim)`): exhaustive for the few faces of most frames, SciPy's solver for crowds. SciPy's
    import costs 0.3 s, a sixth of a short clip's whole run, so it is loaded only when a frame needs it."""
    n_rows, n_cols = sim.shape
    if n_rows == 0 or n_cols == 0:
        return np.zeros(0, int), np.zeros(0, int)
    if n_rows > n_cols:  # match the shorter side
        cols, rows = best_matching(sim.T)
        order = np.argsort(rows, kind="stable")
        return rows[order], cols[order]
    if n_rows == 1:
        return np.zeros(1, int), np.array([int(np.argmax(sim[0]))])
    if n_cols <= 6:  # at most 720 assignments
        best, best_cols = -np.inf, None
        for perm in itertools.permutations(range(n_cols), n_rows):
            total = sim[np.arange(n_rows), perm].sum()
            if total > best:
                best, best_cols = total, perm
        return np.arange(n_rows), np.array(best_cols, int)
    from scipy.optimize import linear_sum_assignment  # SciPy: only for crowds (see above)

    return linear_sum_assignment(-sim)


class FaceTracker:
    """Associates each frame's face boxes with tracks and smooths each track's predictions.

    Args:
        window: frames over which a track's probabilities and valence/arousal are averaged (1 = no smoothing).
        iou_threshold: least IoU between a track's last box and a new box for them to be the same face.
        max_age: frames a track survives without a matching box (a missed detection does not end a face).
        margin: hysteresis: the shown label changes only when another class's smoothed probability exceeds the
            shown one's by this much (0 = plain argmax).
        min_hits: a track is confirmed (reported) once this many detections were associated with it: a box that
            one detection finds and the next ones do not (a car window, a poster) never becomes a face track.
    """

    def __init__(self, window: int = 5, iou_threshold: float = 0.3, max_age: int = 15, margin: float = 0.1,
                 min_hits: int = 2):
        self.window, self.iou_threshold, self.max_age, self.margin = max(1, window), iou_threshold, max_age, margin
        self.min_hits = max(1, min_hits)
        self.tracks: Dict[int, Track] = {}
        self.frame = -1
        self._next_id = 0

    def update(self, boxes_xywh: Sequence[Sequence[float]], frame: Optional[int] = None) -> List[int]:
        """The track id of each box of a new frame (boxes as `(x, y, w, h)`); unmatched boxes start new tracks,
        tracks unseen for more than `max_age` frames end."""
        self.frame = self.frame + 1 if frame is None else frame
        boxes = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes_xywh], np.float64).reshape(-1, 4)
        live = [t for t in self.tracks.values() if self.frame - t.last_frame <= self.max_age]
        self.tracks = {t.id: t for t in live}
        ids = [-1] * len(boxes)
        if live and len(boxes):
            sim = self._similarity(boxes, live)
            rows, cols = best_matching(sim)
            for r, c in zip(rows, cols):
                if sim[r, c] > 0:
                    ids[r] = live[c].id
        for i, box in enumerate(boxes):
            if ids[i] < 0:
                ids[i] = self._next_id
                self.tracks[self._next_id] = Track(self._next_id, box, self.frame, deque(maxlen=self.window),
                                                   deque(maxlen=self.window))
                self._next_id += 1
            t = self.tracks[ids[i]]
            t.hits += 1
            if self.frame > t.last_frame:  # constant-velocity motion of the box centre, for the frames between
                shift = (box[:2] + box[2:] - t.box[:2] - t.box[2:]) / 2.0
                t.velocity = shift / (self.frame - t.last_frame)
            t.box, t.last_frame = box, self.frame
        return ids

    def _similarity(self, boxes: np.ndarray, live: List[Track]) -> np.ndarray:
        """How well each new box continues each live track (0 = not at all): the IoU with the track's box moved on
        at its velocity when it reaches `iou_threshold`; else, for a face that moved fast between two detections
        (its boxes no longer overlap enough), a smaller score when its centre is within one face size of where the
        track was and its size within a factor of 1.5."""
        moved = np.stack([t.box + np.tile(t.velocity * (self.frame - t.last_frame), 2) for t in live])
        iou = iou_matrix(boxes, moved)
        sim = np.where(iou >= self.iou_threshold, iou, 0.0)
        c_new, c_old = (boxes[:, :2] + boxes[:, 2:]) / 2, (moved[:, :2] + moved[:, 2:]) / 2
        side_new = np.sqrt(np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 1), axis=1))
        side_old = np.sqrt(np.prod(np.maximum(moved[:, 2:] - moved[:, :2], 1), axis=1))
        dist = np.linalg.norm(c_new[:, None] - c_old[None], axis=-1) / ((side_new[:, None] + side_old[None]) / 2)
        ratio = side_new[:, None] / side_old[None]
        near = (sim == 0) & (dist <= 1.0) & (ratio >= 1 / 1.5) & (ratio <= 1.5)
        return np.where(near, self.iou_threshold * 0.5 * (1.0 - dist), sim)

    def restart(self) -> None:
        """Ends every track (e.g. the video's frame size changed): the next boxes start new tracks, with new ids."""
        self.tracks = {}

    def confirmed(self, track_id: int) -> bool:
        """Whether the track has been seen by `min_hits` detections (it stays confirmed while it lives)."""
        return self.tracks[track_id].hits >= self.min_hits

    def predict(self, frame: int, width: int, height: int) -> Tuple[List[Tuple[int, int, int, int]], List[int]]:
        """The boxes `(x, y, w, h)` of the tracks seen at the last detection, moved on to `frame` at their
        velocity and clipped to the image, with their ids: what a frame between two detections uses."""
        boxes, ids = [], []
        for t in self.tracks.values():
            if t.last_frame != self.frame:  # only faces found by the last detection (none if it found none)
                continue
            dx, dy = t.velocity * (frame - t.last_frame)
            x1, y1, x2, y2 = t.box + np.array([dx, dy, dx, dy])
            x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
            if x2 - x1 >= 2 and y2 - y1 >= 2:
                boxes.append((int(round(x1)), int(round(y1)), int(round(x2 - x1)), int(round(y2 - y1))))
                ids.append(t.id)
        return boxes, ids

    def smooth(self, track_id: int, probs: np.ndarray, va: np.ndarray) -> Tuple[int, np.ndarray, np.ndarray]:
        """Adds a frame's prediction to a track; returns (shown label, smoothed probabilities, smoothed VA)."""
        t = self.tracks[track_id]
        t.probs.append(np.asarray(probs, np.float64))
        t.vas.append(np.asarray(va, np.float64))
        p = np.mean(t.probs, axis=0)
        v = np.mean(t.vas, axis=0) if np.all(np.isfinite(t.vas)) else np.full(2, np.nan)
        t.label = hysteresis_label(p, t.label, self.margin)
        return t.label, p, v


def hysteresis_label(probs: np.ndarray, current: Optional[int], margin: float) -> int:
    """The argmax of `probs`, except that the `current` label stays until another class beats it by `margin`."""
    best = int(np.argmax(probs))
    if current is None or best == current or probs[best] - probs[current] > margin:
        return best
    return current


def label_changes(labels: Sequence) -> int:
    """How many times a sequence of labels changes value (the flicker of a per-frame label)."""
    return int(sum(a != b for a, b in zip(labels[:-1], labels[1:])))

"""Canonical emotion names and the label presets (8/7/5/4/2 classes).

Every dataset's labels are turned into canonical names first and then mapped *by name* into the active preset, so
datasets with different class orders (FER2013, AffectNet, folders) line up. The canonical order is AffectNet's.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from fer_keras.errors import ConfigError, DataError, nearest_hint

# AffectNet order; FER2013 and the other datasets map into it by name.
CANONICAL: List[str] = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]

# Source orders of the integer labels of well-known datasets.
FER2013_ORDER = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
AFFECTNET_ORDER = list(CANONICAL)
DFEW_ORDER = ["happy", "sad", "neutral", "anger", "surprise", "disgust", "fear"]  # DFEW labels 1..7

ALIASES: Dict[str, str] = {
    "angry": "anger", "anger": "anger", "mad": "anger",
    "happiness": "happy", "happy": "happy", "joy": "happy",
    "sadness": "sad", "sad": "sad",
    "surprised": "surprise", "surprise": "surprise",
    "fearful": "fear", "fear": "fear", "scared": "fear",
    "disgusted": "disgust", "disgust": "disgust",
    "neutral": "neutral", "calm": "neutral",
    "contempt": "contempt", "contemptuous": "contempt",
    "pos": "positive", "positive": "positive",
    "neg": "negative", "negative": "negative",
    # short folder names seen in the wild (e.g. pos/neg/neu/sur test folders)
    "neu": "neutral", "sur": "surprise", "hap": "happy", "ang": "anger", "fea": "fear", "dis": "disgust",
    "con": "contempt",
}

# preset name -> (class names in output order, canonical name -> preset class or None to drop)
_PRESET_CLASSES: Dict[str, List[str]] = {
    "8": list(CANONICAL),
    "7": CANONICAL[:7],
    "5": ["neutral", "happy", "sad", "surprise", "anger"],
    "4": ["positive", "negative", "neutral", "surprise"],
    "2": ["positive", "negative"],
}
_PRESET_MAP: Dict[str, Dict[str, Optional[str]]] = {
    "8": {c: c for c in CANONICAL},
    # AffectNet-7 (and FER2013) have no contempt: such samples are dropped and counted.
    "7": {**{c: c for c in CANONICAL[:7]}, "contempt": None},
    "5": {"neutral": "neutral", "happy": "happy", "sad": "sad", "fear": "sad", "surprise": "surprise",
          "anger": "anger", "disgust": "anger", "contempt": "anger"},
    "4": {"happy": "positive", "neutral": "neutral", "surprise": "surprise", "sad": "negative",
          "fear": "negative", "disgust": "negative", "anger": "negative", "contempt": "negative"},
    "2": {"happy": "positive", "neutral": "positive", "surprise": "positive", "sad": "negative",
          "fear": "negative", "disgust": "negative", "anger": "negative", "contempt": "negative"},
}
PRESETS = tuple(_PRESET_CLASSES)


def preset_for_classes(k: int):
    """The label preset of a model with `k` expression classes (`"8"` for 8, ...), or None when `k` is no preset."""
    return str(k) if str(k) in PRESETS else None


def check_preset(preset) -> str:
    """Returns the preset key ('8','7','5','4','2') or raises a `ConfigError` listing the valid ones."""
    key = str(preset).strip()
    if key not in _PRESET_CLASSES:
        raise ConfigError(f"unknown label preset {preset!r}; valid: {', '.join(PRESETS)}"
                          f"{nearest_hint(preset, PRESETS)}")
    return key


def preset_classes(preset) -> List[str]:
    """Class names of `preset`, in the order of the model's `expression` output."""
    return list(_PRESET_CLASSES[check_preset(preset)])


def normalize_name(name: str) -> Optional[str]:
    """Maps a spelling ('Angry', 'happiness', 'pos') to a canonical or preset-level name; None if unknown."""
    return ALIASES.get(str(name).strip().lower())


def map_name(name: str, preset) -> Optional[int]:
    """Index of a class name in `preset`, or None when the preset drops it (e.g. contempt in the 7-class preset).

    Args:
        name: a canonical name, an alias, or a preset-level name such as 'positive'.
        preset: the target preset.

    Raises:
        DataError: if the name is unknown, or is a merged name ('positive') that the preset cannot express.
    """
    preset = check_preset(preset)
    classes = _PRESET_CLASSES[preset]
    canon = normalize_name(name)
    if canon is None:
        raise DataError(f"unknown expression label {name!r}; known: {', '.join(sorted(set(ALIASES.values())))}")
    if canon in classes and canon not in _PRESET_MAP[preset]:
        return classes.index(canon)  # preset-level name such as 'positive'
    if canon not in _PRESET_MAP[preset]:
        raise DataError(f"label {name!r} cannot be mapped to the {preset}-class preset {classes}")
    target = _PRESET_MAP[preset][canon]
    return None if target is None else classes.index(target)


def mapping_between(source_classes: Sequence[str], preset) -> List[Optional[int]]:
    """For each source class (in order), its index in `preset` or None when dropped."""
    return [map_name(c, preset) for c in source_classes]


def class_names_from_order(order: Sequence[str]) -> List[str]:
    """Validates a user-given integer-label order (e.g. `data.class_names`) and returns canonical names."""
    out = []
    for n in order:
        canon = normalize_name(n)
        if canon is None:
            raise ConfigError(f"data.class_names: unknown class {n!r}")
        out.append(canon)
    return out


# === Mapping a model's classes to a preset ===

def class_mapping_matrix(model_classes: Sequence[str], test_preset: str) -> np.ndarray:
    """(K_model, K_test) 0/1 matrix sending each model class to its test class (a zero row = dropped).

    Raises:
        DataError: when a model class is coarser than the test preset (e.g. a 2-class model on 7-class data).
    """
    test_classes = preset_classes(test_preset)
    mat = np.zeros((len(model_classes), len(test_classes)), np.float64)
    for i, name in enumerate(model_classes):
        canon = normalize_name(name)
        if canon in ("positive", "negative") and canon not in test_classes:
            raise DataError(f"the model predicts merged class {name!r}; it cannot be scored on the "
                            f"{test_preset}-class preset ({', '.join(test_classes)})")
        j = map_name(name, test_preset)
        if j is not None:
            mat[i, j] = 1.0
    return mat


def map_probabilities(probs: np.ndarray, model_classes: Sequence[str], test_preset: str) -> np.ndarray:
    """Maps (N, K_model) probabilities to the test preset and renormalizes rows."""
    if list(model_classes) == preset_classes(test_preset):
        return probs
    out = probs @ class_mapping_matrix(model_classes, test_preset)
    s = out.sum(axis=1, keepdims=True)
    return np.divide(out, s, out=np.full_like(out, 1.0 / out.shape[1]), where=s > 0)

"""Models shipped with fer_keras (see MODEL_CARD.md), by the short names that `--model` and the Python API accept.

    python -m fer_keras.predict photo.jpg --model fer2013
    python evaluate_model.py --model default --data /data/my_faces --split all
    fer_keras.analyze("photo.jpg", model="default")

`SHIPPED_MODELS` is the only list of these names: `--help`, the errors and the tests read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from fer_keras.errors import ModelError, nearest_hint
from fer_keras.registry import Registry

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class ShippedModel:
    """A model file in this folder (with its `.json` sidecar and, where present, its `.tflite` export, which predict
    runs through LiteRT; an ensemble's sidecar names its members and weights, `fer_keras.models.ensemble`)."""

    name: str
    file: str
    about: str

    @property
    def path(self) -> str:
        return os.path.join(HERE, self.file)


SHIPPED_MODELS: Registry[ShippedModel] = Registry("shipped model", ModelError)
for _m in (
    ShippedModel("default", "default_ensemble.keras",
                 "8 AffectNet classes + valence/arousal, judged on clean labels (FER+, AffectNet, CK+, JAFFE); "
                 "MobileNetV2 at 112 px RGB + the compact CustomCNN (valence/arousal mostly), int8 LiteRT"),
    ShippedModel("fer2013", "fer2013_ensemble.keras",
                 "7 FER2013 classes on FER2013's own labels, for comparison with the FER2013 literature; "
                 "MobileNetV2 + CustomCNN at 144 px RGB"),
    ShippedModel("compact", "multitask_customcnn.keras",
                 "the default until 2026-12-07, 8 classes + valence/arousal: one CustomCNN at 48 px gray, faster, "
                 "less accurate"),
):
    SHIPPED_MODELS.register(_m.name)(_m)


def shipped_names_help() -> str:
    """`name (what it is)` for every shipped model, for `--help` texts."""
    return "; ".join(f"{n} ({SHIPPED_MODELS.get(n).about})" for n in SHIPPED_MODELS.names())


def resolve_model(spec: Optional[str] = None) -> str:
    """The path to load for `--model SPEC`: a shipped model's name (None = `default`), else an existing file or run
    folder as given. A shipped name wins over a file or folder of that name in the working folder (write
    `./default` for that one): the same command must not load another model depending on where it runs.

    Raises:
        ModelError: SPEC is neither a shipped name nor an existing path (the message lists the names), or the
            shipped file is missing from this install.
    """
    spec = "default" if spec is None else os.fspath(spec)
    if spec in SHIPPED_MODELS:
        path = SHIPPED_MODELS.get(spec).path
        if not os.path.isfile(path):
            raise ModelError(f"shipped model {spec!r} ({path}) is missing from this install; reinstall fer_keras")
        return path
    if os.path.exists(spec):
        return spec
    raise ModelError(f"model {spec!r}: no such file or run folder, and not a shipped model name (shipped: "
                     f"{', '.join(SHIPPED_MODELS.names())}){nearest_hint(spec, SHIPPED_MODELS.names())}")

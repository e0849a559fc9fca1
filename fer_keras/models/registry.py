"""The model registry and the one entry point `build_model`."""

from __future__ import annotations

from typing import Tuple

import keras

from fer_keras.errors import ModelError
from fer_keras.registry import Registry

MODELS: Registry = Registry("model", ModelError)


def build_model(cfg, num_classes: int, input_shape: Tuple[int, int, int]) -> keras.Model:
    """Builds the registered model `cfg.name` (a `ModelConfig`) for `num_classes` and `input_shape` (H, W, C).

    Example:
        >>> model = build_model(ModelConfig(name="customcnn"), 7, (48, 48, 1))
        >>> model.output_names
        ['expression', 'valence_arousal']
    """
    builder = MODELS.get(cfg.name)
    return builder(cfg, num_classes, tuple(input_shape))

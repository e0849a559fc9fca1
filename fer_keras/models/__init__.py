"""Model builders, chosen by name through `MODELS` (case-insensitive).

Every builder returns a functional `keras.Model` that takes raw 0-255 images (N,H,W,C) and has two named outputs:
`expression` (softmax over the label preset) and `valence_arousal` (2 tanh units).
"""

from fer_keras.models.registry import MODELS, build_model  # noqa: F401
from fer_keras.models import backbones, custom_cnn, offline_imagenet, r3d  # noqa: F401  (registration side effects)
from fer_keras.models import ensemble  # noqa: F401  (its layers, for loading saved ensembles)

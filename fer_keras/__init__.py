"""fer_keras: multi-task facial affect analysis (expression + valence/arousal) on TensorFlow/Keras 3.

    >>> import fer_keras
    >>> for face in fer_keras.analyze("group.jpg"):
    ...     print(face.box, face.label, round(face.confidence, 2), face.valence, face.arousal)

The API (`fer_keras/api.py`): `analyze`, `Analyzer`, `Face`, `track_summary`, `train`, `Run`, `load_run`,
`load_model`. Importing
`fer_keras` imports no TensorFlow; each name is loaded on first use.
"""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
__all__ = ["Face", "Analyzer", "analyze", "track_summary", "Run", "train", "load_run", "load_model"]


def __getattr__(name):
    # PEP 562: the API module (OpenCV, the model loaders) is imported only when one of its names is used.
    if name in __all__:
        from fer_keras import api  # on first use: `import fer_keras` stays light

        return getattr(api, name)
    raise AttributeError(f"module 'fer_keras' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])

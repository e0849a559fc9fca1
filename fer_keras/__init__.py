"""fer_keras: multi-task facial affect analysis (expression + valence/arousal) on TensorFlow/Keras 3."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

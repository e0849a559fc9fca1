"""Low-light face detection (the DARK FACE task): readers, synthetic scenes, metrics."""

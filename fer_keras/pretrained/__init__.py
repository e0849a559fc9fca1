"""Models shipped with fer_keras (see MODEL_CARD.md)."""

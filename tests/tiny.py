"""The tiny training runs the tests make (one list, used by every test module): 32 px, one 8-filter block."""

# `--set` overrides of a tiny model and a quiet run (also for `load_config(None, [...])`).
TINY_SETS = ("model.widths=[8]", "model.blocks=[1]", "model.head_units=8", "train.verbose=0",
             "train.tensorboard=false")
TINY_ARGV = ("--epochs", "1", "--image-size", "32", *[a for s in TINY_SETS for a in ("--set", s)])


def tiny_argv(*extra: str) -> list:
    """`train_model.py` arguments for a 1-epoch, 32 px, 8-filter CustomCNN run, followed by `extra` (a later
    flag wins, e.g. `--epochs 2`)."""
    return [*TINY_ARGV, *extra]

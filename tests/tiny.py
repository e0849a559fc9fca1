"""The command-line arguments of the tiny training runs the tests make (one list, used by every test module)."""

TINY_ARGV = ("--epochs", "1", "--image-size", "32", "--set", "model.widths=[8]", "--set", "model.blocks=[1]",
             "--set", "model.head_units=8", "--set", "train.verbose=0", "--set", "train.tensorboard=false")


def tiny_argv(*extra: str) -> list:
    """`train_model.py` arguments for a 1-epoch, 32 px, 8-filter CustomCNN run, followed by `extra`."""
    return [*TINY_ARGV, *extra]

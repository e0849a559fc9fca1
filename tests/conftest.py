"""Shared fixtures: tiny generated datasets (never real data), and the markers of the tests kept out of the default
run (`python -m pytest -q`, about 10 minutes here): `slow` (trains for more than a few seconds, or starts several
processes) and `realdata` (reads ../shared). `--run-slow` runs them too (what CI's `.ci/run` does)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from fer_keras.config import Config  # noqa: E402
from fer_keras.data.demo import write_demo  # noqa: E402

FER2013_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fer2013")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow or realdata (the full set, as CI runs it)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains for more than a few seconds or starts several processes; "
                                       "run with --run-slow")
    config.addinivalue_line("markers", "realdata: reads ../shared (skipped there when it is absent); run with "
                                       "--run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    for item in items:
        for mark in ("slow", "realdata"):
            if mark in item.keywords:
                item.add_marker(pytest.mark.skip(reason=f"{mark}: run with --run-slow"))
                break


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A tiny demo dataset (12 faces per class, 32 px) in every on-disk format, generated once per session."""
    root = str(tmp_path_factory.mktemp("demo"))
    paths = {fmt: write_demo(root, fmt, per_class=12, size=32, seed=0)
             for fmt in ("folder", "csv", "npy", "fer2013", "affectnet")}
    return paths


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_root):
    """One trained tiny 7-class run (demo CSV data, `tiny_argv()`), shared by the tests that only read a run."""
    from fer_keras.cli_train import main as train_main
    from tiny import tiny_argv

    runs = str(tmp_path_factory.mktemp("tiny-runs"))
    return train_main(tiny_argv("--data", demo_root["csv"], "--labels", "7", "--runs-dir", runs, "--name", "tiny"))


@pytest.fixture
def tiny_cfg(tmp_path):
    """A config for fast tests: 32 px, small CustomCNN, 1 epoch, runs under tmp_path."""
    cfg = Config()
    cfg.data.image_size = 32
    cfg.data.batch_size = 16
    cfg.model.widths = [8, 16]
    cfg.model.blocks = [1, 1]
    cfg.model.head_units = 16
    cfg.train.epochs = 1
    cfg.train.verbose = 0
    cfg.train.tensorboard = False
    cfg.train.runs_dir = str(tmp_path / "runs")
    return cfg

"""tf.distribute: training under MirroredStrategy on two logical CPU devices matches single-device training."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Logical devices must be configured before TensorFlow initializes, so the check runs in a fresh interpreter.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from fer_keras.config import Config
    from fer_keras.data.demo import write_demo
    from fer_keras.expression.train import train

    tmp = sys.argv[1]
    weights, replicas = {}, {}
    for strategy in ("default", "mirrored"):
        cfg = Config()
        cfg.data.path = write_demo(os.path.join(tmp, "demo"), "csv", per_class=12, size=32, seed=0)
        cfg.data.image_size, cfg.data.batch_size, cfg.data.val_fraction = 32, 16, 0.25
        cfg.model.widths, cfg.model.blocks, cfg.model.head_units, cfg.model.dropout = [8, 16], [1, 1], 16, 0.0
        cfg.train.epochs, cfg.train.steps_per_epoch, cfg.train.verbose = 1, 3, 0  # 3 full batches
        cfg.train.tensorboard, cfg.train.deterministic = False, True
        cfg.train.optimizer, cfg.train.learning_rate = "sgd", 0.05  # Adam would amplify float noise in ~0 gradients
        cfg.train.strategy, cfg.train.name = strategy, strategy
        cfg.train.precision = "float32"  # compares float arithmetic; bf16 rounding would swamp the tolerance
        cfg.train.runs_dir = os.path.join(tmp, "runs")
        run = train(cfg)
        replicas[strategy] = json.load(open(os.path.join(run, "runtime.json")))["replicas"]
        model = keras.saving.load_model(os.path.join(run, "model.keras"), compile=False)
        weights[strategy] = [w.numpy() for w in model.weights]
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(weights["default"], weights["mirrored"])]
    scale = max(float(np.max(np.abs(a))) for a in weights["default"])
    print(json.dumps({"replicas": replicas, "max_abs_diff": max(diffs), "max_abs_weight": scale}))
""")


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_match_single_device(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])
    assert res["replicas"] == {"default": 1, "mirrored": 2}
    # Three SGD steps on the same global batches (one epoch, so both runs keep the same checkpoint); BatchNorm
    # statistics are synchronized across the replicas and the VA loss is scaled per replica, so only the float
    # summation order differs (measured: 1.2e-6 on weights up to 2.1).
    assert res["max_abs_diff"] < 1e-4, res

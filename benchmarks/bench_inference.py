"""Inference benchmark of an exported run: per-face latency (batch 1) and throughput (batch 64).

    python benchmarks/bench_inference.py --run runs/<name> [--repeats 5]

Exports the run first if `runs/<name>/export/` is missing. Reports medians of repeated timings for the SavedModel
(`serving_default`, uint8 input at the model's size), the TFLite float and dynamic-range models (batch 1 only: their
input is fixed at 1), and the Keras model; prints a Markdown table and writes it to `<run>/export/benchmark.md`.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def _median_time(fn, repeats):
    fn()  # warm-up (tracing, allocation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latency-calls", type=int, default=50)
    a = p.parse_args(argv)
    import tensorflow as tf

    from fer_keras.model_info import load_keras_model
    from fer_keras.export import export_run

    exp = os.path.join(a.run, "export")
    if not os.path.isdir(os.path.join(exp, "savedmodel")):
        export_run(a.run)
    model = load_keras_model(os.path.join(a.run, "model.keras"))
    _, size, _, ch = model.input_shape
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (64, size, size, ch)).astype(np.uint8)
    one = batch[:1]
    sm = tf.saved_model.load(os.path.join(exp, "savedmodel")).signatures["serving_default"]
    rows = []

    def add(name, per_call_s, n):
        rows.append({"model": name, "batch": n, "ms_per_call": 1000 * per_call_s, "faces_per_s": n / per_call_s})

    t1 = _median_time(lambda: [sm(images=tf.constant(one)) for _ in range(a.latency_calls)], a.repeats)
    add("SavedModel", t1 / a.latency_calls, 1)
    add("SavedModel", _median_time(lambda: sm(images=tf.constant(batch)), a.repeats), 64)
    xf = batch.astype(np.float32)
    add("Keras (model.predict_on_batch)", _median_time(lambda: model.predict_on_batch(xf), a.repeats), 64)
    for name in ("model_float", "model_dynamic"):
        path = os.path.join(exp, f"{name}.tflite")
        interp = tf.lite.Interpreter(model_path=path)
        runner = interp.get_signature_runner()
        x1 = one.astype(np.float32)
        t = _median_time(lambda: [runner(image=x1) for _ in range(a.latency_calls)], a.repeats)
        add(f"TFLite {name.split('_')[1]} ({os.path.getsize(path) / 1e6:.1f} MB)", t / a.latency_calls, 1)
    # Accuracy of each format on the run's own test split (the TFLite models' accuracy delta).
    from fer_keras.config import config_from_dict, read_yaml
    from fer_keras.data.pipeline import load_data
    from fer_keras.expression.export import tflite_predict

    cfg = config_from_dict(read_yaml(os.path.join(a.run, "config.yaml")))
    data = load_data(cfg.data)
    test = data.test if data.test is not None else data.val
    x_test = test.images.astype(np.float32)
    ref = model.predict(x_test, verbose=0)["expression"]
    acc = {"Keras": float(np.mean(ref.argmax(1) == test.expression))}
    for name in ("model_float", "model_dynamic"):
        probs = tflite_predict(os.path.join(exp, f"{name}.tflite"), x_test)["expression"]
        acc[f"TFLite {name.split('_')[1]}"] = float(np.mean(probs.argmax(1) == test.expression))
        acc[f"TFLite {name.split('_')[1]} max |p - p_keras|"] = float(np.abs(probs - ref).max())
    head = (f"Inference of `{a.run}` ({model.count_params():,} params, {size}x{size}x{ch}) on "
            f"{platform.machine()} with {os.cpu_count()} CPUs, TF {tf.__version__}; medians of {a.repeats} repeats.\n"
            f"Command: `python benchmarks/bench_inference.py --run {a.run}`\n")
    table = ["| model | batch | ms per call | faces/s |", "|---|---|---|---|"]
    table += [f"| {r['model']} | {r['batch']} | {r['ms_per_call']:.2f} | {r['faces_per_s']:.0f} |" for r in rows]
    table += ["", f"Test-split accuracy ({len(test)} faces):", ""]
    table += [f"- {k}: {v:.4f}" for k, v in acc.items()]
    text = head + "\n" + "\n".join(table) + "\n"
    print(text)
    with open(os.path.join(exp, "benchmark.md"), "w") as f:
        f.write(text)
    with open(os.path.join(exp, "benchmark.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

"""Shared by the benchmark sections: paths, the machine record, result files, worker subprocesses, timers."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")  # run_all.py --results-dir changes it (read as common.RESULTS_DIR)
FER2013 = os.path.join(ROOT, "..", "shared", "data", "fer2013")
BENCH_DATA = os.path.join(ROOT, "data", "bench")
RUN_ALL = os.path.join(HERE, "run_all.py")
SECTIONS = ("training", "pipeline", "memory", "inference", "time_to_accuracy", "detection", "backbones")
sys.path.insert(0, ROOT)


def machine() -> dict:
    import keras
    import tensorflow as tf

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def save(section: str, payload: dict) -> None:
    from fer_keras.io_utils import atomic_write_text

    payload = {"section": section, "machine": machine(), **payload}
    atomic_write_text(os.path.join(RESULTS_DIR, f"{section}.json"), json.dumps(payload, indent=1))


def run_json(args, timeout=1800) -> dict:
    """Runs `python benchmarks/run_all.py --worker ...` and returns the JSON of its last stdout line."""
    out = subprocess.run([sys.executable, RUN_ALL] + args, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"worker {args} failed (rc {out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1])


class PeakRSS:
    """Samples this process' resident memory every 50 ms (ru_maxrss also counts the import-time peak)."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            with open("/proc/self/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(ln.split()[1]) * 1024)
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


class EpochTimer:
    """A Keras callback factory recording each epoch's wall time."""

    @staticmethod
    def make():
        import keras

        class _T(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._t)

        return _T()


def interleaved_epochs(cases: dict, steps: int, repeats: int) -> dict:
    """Times `repeats` rounds of one `steps`-step epoch per case (name -> (model, dataset)), round-robin.

    Round-robin (A B C, A B C, ...) rather than one case after another, so that slow drifts of this shared VM's
    speed (seen: +-30% over minutes) spread over every case instead of deciding the ranking.
    """
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, (model, ds) in cases.items():
            timer = EpochTimer.make()
            model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
            times[k].append(timer.times[0])
    return times

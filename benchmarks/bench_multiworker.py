"""One worker vs two workers on this host: the same small demo-data run, as one process and as two
`train.strategy=multiworker` processes on loopback ports.

    python benchmarks/bench_multiworker.py [--epochs 3 --per-class 64 --image-size 48]

Writes benchmarks/results/multiworker.json: wall time of the whole command(s), the run's median epoch time and
images/s (from its runtime.json), and whether the two workers ended with the same weights. On one 2-core machine two
workers are not faster: both processes share the same two cores, and every step adds a gradient all-reduce over
gRPC; the row is there to show the mechanism works and what it costs, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fer_keras.distributed import local_cluster  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--per-class", type=int, default=64)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "multiworker.json"))
    a = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-mw-")
    common = ["--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--image-size", str(a.image_size),
              "--model", "CustomCNN", "--set", f"data.demo_per_class={a.per_class}",
              "--set", f"data.demo_size={a.image_size}", "--set", "train.tensorboard=false",
              "--runs-dir", os.path.join(tmp, "runs")]
    env = {**os.environ, "FER_KERAS_DATA": os.path.join(tmp, "data"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Demo data generated once, outside the timing.
    subprocess.run([sys.executable, os.path.join(ROOT, "train_model.py"), *common, "--epochs", "1", "--name",
                    "warm", "--set", "train.steps_per_epoch=1"], env=env, check=True, capture_output=True, cwd=ROOT)
    rows = {}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "train_model.py"), *common, "--name", "one"], env=env,
                   check=True, capture_output=True, cwd=ROOT)
    rows["1 worker"] = {"wall_seconds": round(time.perf_counter() - t0, 1), "run": "one"}
    cluster = local_cluster(2)
    procs = []
    t0 = time.perf_counter()
    for i in (1, 0):
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "train_model.py"), *common, "--name", "two",
                                       "--set", "train.strategy=multiworker"], env={**env, "TF_CONFIG": cluster[i]},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT))
    outs = [pr.communicate()[0] for pr in procs]
    if any(pr.returncode for pr in procs):
        raise SystemExit("a worker failed:\n" + "\n".join(o[-1500:] for o in outs))
    digests = [re.findall(r"final weights digest (\w+)", o) for o in outs]
    rows["2 workers"] = {"wall_seconds": round(time.perf_counter() - t0, 1), "run": "two",
                         "same_final_weights": digests[0] == digests[1] and bool(digests[0])}
    for row in rows.values():
        with open(os.path.join(tmp, "runs", row.pop("run"), "runtime.json")) as f:
            rt = json.load(f)
        row["median_epoch_seconds"] = round(rt["median_epoch_seconds"], 2)
        row["train_images_per_second"] = round(rt["train_images_per_second"], 1)
    out = {"command": "python benchmarks/bench_multiworker.py " + " ".join(argv or sys.argv[1:]),
           "machine": f"{os.cpu_count()} CPU cores, both workers on this host (loopback)",
           "setup": f"CustomCNN on demo data, {a.per_class}/class, {a.image_size} px, global batch {a.batch_size}, "
                    f"{a.epochs} epochs", "results": rows}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    for k, r in rows.items():
        print(f"{k:10s} wall {r['wall_seconds']:6.1f} s | epoch {r['median_epoch_seconds']:5.2f} s | "
              f"{r['train_images_per_second']:6.1f} img/s" + (f" | same final weights: {r['same_final_weights']}"
                                                              if "same_final_weights" in r else ""))
    print(f"wrote {a.out}")
    return out


if __name__ == "__main__":
    main()

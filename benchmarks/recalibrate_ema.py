"""Gives the EMA weights of a finished run their own BatchNorm statistics, scores each candidate on val, and writes the
best as a new run folder (the original run is left as it is).

    python benchmarks/recalibrate_ema.py --run runs/default-v3 --candidates runs/default-v3/model.keras \
        .train/snap/ep*.weights.h5 [--batches 100] --out runs/default-v3-bn

Why: the optimizer's moving average of the weights (`train.ema_momentum`) is judged with the BatchNorm moving
statistics of the raw weights, which it does not match; on run default-v3 re-measuring them on 100 training batches
raised FER+ val accuracy of one checkpoint from 76.4% to 82.8% (docs/training-status.md). Runs trained with
`train.bn_recalibration_batches` do this at every validation; this script does it after the fact for runs trained
before that key existed.

Candidates: `.keras` files (the EMA weights as checkpointed) and the run's epoch backups `*.weights.h5` (raw weights
and optimizer state: the EMA is read from the optimizer). Each gets statistics measured on `--batches` batches of
plain training images drawn in the sources' training proportions (`fitting.recalibrate_batchnorm`) and is scored on the run's val split as training scores it
(`val_score`, `metrics.source_scores`). The best is saved as `<out>/model.keras` with the run's config (plus
`train.bn_recalibration_batches`), labels and history; `<out>/recalibration.json` lists every candidate's scores.
Needs the run's data (../shared for the default model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def ema_model(candidate: str, template: str):
    """The EMA weights of `candidate` in a Keras model: a checkpoint as saved, or a backup's optimizer average."""
    import keras

    from fer_keras.model_info import load_keras_model

    if candidate.endswith(".keras"):
        return load_keras_model(candidate)
    import fer_keras.keras_metrics  # noqa: F401  (registers the compiled model's losses and metrics)
    import fer_keras.losses  # noqa: F401
    import fer_keras.models.layers  # noqa: F401

    model = keras.saving.load_model(template, compile=True)  # the run's model and optimizer (with its EMA)
    model.load_weights(candidate)
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap._apply_to_ema_optimizers(swap._tf_swap_variables, swap._backend_swap_variables)
    return model


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--candidates", nargs="+", required=True)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--out", required=True, help="the new run folder (must not exist)")
    p.add_argument("--as-saved", action="store_true", help="also score each candidate before recalibration")
    p.add_argument("--wait-minutes", type=float, default=0.0,
                   help="wait this long for a candidate that is not there yet (a training still writing them)")
    a = p.parse_args(argv)
    if os.path.exists(a.out):
        raise SystemExit(f"{a.out}: exists; name a new folder (earlier results are never overwritten)")

    import tensorflow as tf

    from fer_keras.config import save_config
    from fer_keras.data.pipeline import load_data, make_dataset, weighted_sample
    from fer_keras.expression.evaluate import predict_table
    from fer_keras.fitting import recalibrate_batchnorm
    from fer_keras.io_utils import atomic_path
    from fer_keras.metrics import source_scores
    from fer_keras.run_dir import RunDir

    run = RunDir.open(a.run)
    cfg = run.config()
    data = load_data(cfg.data)
    names = [s.name for s in cfg.data.sources]
    os.makedirs(a.out)
    out = RunDir(a.out)
    for name in os.listdir(a.run):  # the run's record (config, labels, history, summaries), not its model or backup
        src = os.path.join(a.run, name)
        if os.path.isfile(src) and not name.endswith(".keras") and name not in ("state.json",):
            shutil.copy2(src, os.path.join(a.out, name))
    cfg.train.bn_recalibration_batches = a.batches
    save_config(cfg, os.path.join(a.out, "config.yaml"))
    with open(os.path.join(a.out, "state.json"), "w") as f:
        json.dump({"status": "running"}, f)
    # plain (unaugmented) training images drawn in the sources' training proportions, as training.py measures them
    plain = make_dataset(weighted_sample(data.train, cfg.data, a.batches * cfg.data.batch_size, cfg.train.seed), cfg,
                         training=False)
    results, best, summary = {}, None, {}
    for cand in a.candidates:
        deadline = time.time() + 60 * a.wait_minutes
        while not os.path.exists(cand) and time.time() < deadline:  # a backup the running training has yet to write
            time.sleep(10)
        if not os.path.exists(cand):
            print(f"{cand}: not there (skipped)", flush=True)
            continue
        time.sleep(2 if a.wait_minutes else 0)  # a file that just appeared: let its copy finish
        model = ema_model(cand, run.model_path)
        row = {}
        # "as saved" is what training logged for the checkpoint (history.csv); --as-saved scores it again here
        for stage in (("as saved",) if a.as_saved else ()) + ("recalibrated",):
            if stage == "recalibrated":
                recalibrate_batchnorm(model, (tf.cast(x, tf.float32) for x, _ in plain.take(a.batches)))
            pred = predict_table(model, data.val, cfg, batch_size=256)
            s = source_scores(data.val.expression, pred["expression"], data.val.va, pred["valence_arousal"],
                              data.val.source_id, names)
            row[stage] = {k: round(float(v), 4) for k, v in s.items()}
            print(f"{os.path.basename(cand)} {stage}: val_score {s['score']:.4f} "
                  + " ".join(f"{n} {s[f'{n}_accuracy']:.4f}" for n in names), flush=True)
        results[cand] = row
        if best is None or row["recalibrated"]["score"] > results[best]["recalibrated"]["score"]:
            best = cand
            with atomic_path(out.model_path) as tmp:  # the best so far: a stopped run of this script keeps it
                model.save(tmp)
        summary = {"command": "python benchmarks/recalibrate_ema.py " + " ".join(argv if argv is not None
                                                                              else sys.argv[1:]),
                   "run": a.run, "batches": a.batches, "chosen": best, "candidates": results}
        with open(os.path.join(a.out, "recalibration.json"), "w") as f:
            json.dump(summary, f, indent=1)
    with open(os.path.join(a.out, "state.json"), "w") as f:
        json.dump({"status": "finished"}, f)
    print(f"chosen {best} (val_score {results[best]['recalibrated']['score']:.4f}); wrote {a.out}")
    return summary


if __name__ == "__main__":
    main()

"""Choose a model's calibrated output prior on val splits and store it in the model's metadata.

    python benchmarks/choose_calibration.py --model fer_keras/pretrained/default_ensemble.keras \
        --config configs/default_v4.yaml [--method logit_adjustment|class_bias] [--tta auto] [--write]

The model predicts every val source of the config as `predict --no-detect` runs it (LiteRT where it ships a TFLite
export, its own views), without calibration. The prior is the model's mean prediction over the in-domain val faces
(what it learnt to expect: FER+'s majority votes make neutral and happy common). Each `tau` of the grid is scored
by the config's val score (`metrics.source_scores`: in- and out-of-domain sources weighed by
`train.out_of_domain_weight`). `--method class_bias` then searches one log-probability shift per class from there
(coordinate ascent on a grid of `--step`, `--rounds` passes over the classes, each shift within +-`--max-shift`). The
best is chosen, and with `--write` stored as the model's `"calibration"`
(fer_keras/calibration.py) in its sidecar `.json` or run `labels.json`. `--keep KEY=FLOOR` (repeatable) admits only
calibrations whose val number KEY (e.g. `score_in`, `ferplus_accuracy`) is at least FLOOR. Val splits choose; they are never reported as tests.
Writes benchmarks/results/choose_calibration.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_real_faces import ours  # noqa: E402
from compare_val import val_domains, val_sets  # noqa: E402


def val_predictions(model: str, config: str, tta: str) -> tuple:
    """({source: raw probs}, {source: (labels, va, preset)}, {source: VA predictions}, class names)."""
    probs, truth, va = {}, {}, {}
    names = None
    for source, (paths, labels, va_true, preset) in val_sets(config).items():
        o = ours(model, paths, tta=tta, calibration="none")
        probs[source], va[source], names = np.asarray(o["probs"], np.float64), np.asarray(o["va"]), o["class_names"]
        truth[source] = (labels, va_true, preset)
    return probs, truth, va, names


def score(probs, truth, va, names, domains, w_out, calibration=None) -> dict:
    """The config's val score of (optionally calibrated) predictions."""
    from fer_keras.metrics import source_scores

    ys, ps, vts, vps, ids, srcs = [], [], [], [], [], []
    for i, source in enumerate(probs):
        labels, va_true, _ = truth[source]
        ys.append(np.array([names.index(n) for n in labels]))
        ps.append(probs[source] if calibration is None else calibration.apply(probs[source]))
        vts.append(np.asarray(va_true, np.float64))
        vps.append(np.asarray(va[source], np.float64))
        ids.append(np.full(len(labels), i))
        srcs.append(source)
    return source_scores(np.concatenate(ys), np.concatenate(ps), np.concatenate(vts), np.nan_to_num(
        np.concatenate(vps)), np.concatenate(ids), srcs, [domains.get(s, "in") for s in srcs], w_out)


def floors(items) -> dict:
    """`--keep KEY=FLOOR` arguments as {key: floor}."""
    return {k: float(v) for k, v in (item.split("=", 1) for item in items)}


def admitted_by(keep: dict):
    """The test `--keep` sets: every named val number is at least its floor."""
    return lambda r: all(r.get(k, -np.inf) >= floor for k, floor in keep.items())


def search_class_bias(start, names, score_of, step: float, max_shift: float, rounds: int, admitted=None) -> tuple:
    """Coordinate ascent of per-class log-probability shifts from `start`: each class's shift in turn takes the grid
    value (step `step`, within +-`max_shift`) that maximises `score_of(calibration)["score"]` among the scores
    `admitted` accepts, `rounds` times. Returns (the calibration, its scores)."""
    from fer_keras.calibration import class_bias

    bias = np.asarray(start, np.float64) - np.mean(start)  # only differences between classes matter
    grid = np.round(np.arange(-max_shift, max_shift + step / 2, step), 4)

    def ok(r):
        return admitted is None or admitted(r)

    best = score_of(class_bias(bias, names))
    for _ in range(rounds):
        moved = False
        for c in range(len(names)):
            for v in grid:
                trial = bias.copy()
                trial[c] = v
                r = score_of(class_bias(trial, names))
                if ok(r) and r["score"] > best["score"] + 1e-9:
                    bias, best, moved = trial, r, True
        if not moved:
            break
    return class_bias(bias, names), best


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a shipped name, .keras file or run folder")
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "default_v4.yaml"),
                   help="its val sources (with domains) choose the prior's strength")
    p.add_argument("--tta", default="auto", choices=["auto", "none", "flip", "crops"])
    p.add_argument("--taus", nargs=3, type=float, default=[0.0, 1.5, 0.05], metavar=("FROM", "TO", "STEP"))
    p.add_argument("--method", default="logit_adjustment", choices=["logit_adjustment", "class_bias"])
    p.add_argument("--step", type=float, default=0.1, help="class_bias: the shifts' grid step")
    p.add_argument("--max-shift", type=float, default=2.0, help="class_bias: largest shift either way")
    p.add_argument("--rounds", type=int, default=3, help="class_bias: passes over the classes")
    p.add_argument("--keep", action="append", default=[], metavar="KEY=FLOOR",
                   help="admit only calibrations whose val number KEY (score_in, ferplus_accuracy, ...) is at least "
                        "FLOOR (repeatable)")
    p.add_argument("--write", action="store_true", help="store the chosen calibration in the model's metadata")
    p.add_argument("--out", default=os.path.join(HERE, "results", "choose_calibration.json"))
    a = p.parse_args(argv)
    from fer_keras.calibration import class_bias, logit_adjustment
    from fer_keras.io_utils import atomic_write_text
    from fer_keras.model_info import write_calibration
    from fer_keras.pretrained import resolve_model

    model = resolve_model(a.model)
    domains, w_out = val_domains(a.config)
    probs, truth, va, names = val_predictions(model, a.config, a.tta)
    inside = [s for s in probs if domains.get(s, "in") == "in"]
    prior = np.concatenate([probs[s] for s in inside]).mean(axis=0)
    taus = np.round(np.arange(a.taus[0], a.taus[1] + a.taus[2] / 2, a.taus[2]), 4)
    rows = []
    for tau in taus:
        cal = logit_adjustment(prior, float(tau), names)
        rows.append({"tau": float(tau), **score(probs, truth, va, names, domains, w_out, cal)})
    raw = rows[0] if taus[0] == 0 else {"tau": 0.0, **score(probs, truth, va, names, domains, w_out)}
    keep = floors(a.keep)
    unknown = [k for k in keep if k not in raw]
    if unknown:
        p.error(f"--keep {unknown[0]}: not a val number (valid: {', '.join(sorted(raw))})")
    admitted = admitted_by(keep)

    best = max((r for r in rows if admitted(r)), key=lambda r: r["score"], default=rows[0])
    for r in rows:
        keys = [k for k in r if k.endswith("_accuracy")]
        print(f"tau {r['tau']:.2f}: score {r['score']:.4f} (in {r.get('score_in', float('nan')):.4f}, out "
              f"{r.get('score_out', float('nan')):.4f}) | " + ", ".join(f"{k} {100 * r[k]:.2f}" for k in keys)
              + ("  <- chosen" if r is best else ""))
    how = (f"benchmarks/choose_calibration.py --method {a.method} on the val splits of "
           f"{os.path.relpath(a.config, ROOT)} (tta {a.tta}, out-of-domain weight {w_out})")
    chosen = logit_adjustment(prior, best["tau"], names)
    if a.method == "class_bias":
        chosen, best = search_class_bias(chosen.bias, names, lambda cal: score(probs, truth, va, names, domains,
                                                                                w_out, cal),
                                         a.step, a.max_shift, a.rounds, admitted)
        print("class_bias: " + ", ".join(f"{n} {b:+.2f}" for n, b in zip(names, chosen.bias)) + f": score "
              f"{best['score']:.4f} (in {best.get('score_in', float('nan')):.4f}, out "
              f"{best.get('score_out', float('nan')):.4f})")
        chosen = class_bias(chosen.bias, names, chosen_on=f"{how}: val score {best['score']:.4f} vs "
                                                          f"{raw['score']:.4f} raw")
    else:
        chosen = logit_adjustment(prior, best["tau"], names, chosen_on=f"{how}: prior = mean prediction on the "
                                  f"in-domain val faces ({', '.join(inside)}); val score {best['score']:.4f} vs "
                                  f"{raw['score']:.4f} raw")
    res = {"command": "python benchmarks/choose_calibration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": a.model, "config": a.config, "tta": a.tta, "class_names": names, "prior": prior.tolist(),
           "keep": keep, "raw": raw, "chosen": best, "calibration": chosen.to_dict(), "rows": rows}
    if a.write:
        keep = any(abs(b) > 1e-9 for b in chosen.bias)
        res["written_to"] = write_calibration(model, chosen if keep else None)
        print(f"wrote the calibration ({chosen.describe()}) into {res['written_to']}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()

"""RESULTS.md, rendered from the section JSON files."""

from __future__ import annotations

import json
import os

from suite import common as C
from suite.common import SECTIONS


# === RESULTS.md ===

def render() -> str:
    res = {}
    for s in SECTIONS:
        p = os.path.join(C.RESULTS_DIR, f"{s}.json")
        if os.path.isfile(p):
            with open(p) as f:
                res[s] = json.load(f)
    lines = ["# Benchmark results", "",
             "Written by `python benchmarks/run_all.py` from `benchmarks/results/*.json`; every number was measured "
             "on the machine named in its section. Re-run a section with `--only <section>`.", ""]

    def head(s, title):
        m = res[s]["machine"]
        lines.extend([f"## {title}", "", f"{m['cpu']} ({m['cpus']} CPUs, {m['gpus']} GPUs), Python {m['python']}, "
                      f"TensorFlow {m['tensorflow']}, Keras {m['keras']}; measured {m['date']}.", ""])

    if "training" in res:
        r = res["training"]
        head("training", "1. Training throughput (images/s, batch 32, medians of %d interleaved epochs)" % r["repeats"])
        lines += ["| model | size | params | XLA | precision | img/s | command |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {x['model']} | {x['size']} | {x['params'] / 1e6:.1f}M | {x['xla']} | {x['precision']} | "
                  f"{x['img_s']:.1f} | `{x['command']}` |" for x in r["rows"]]
        lines += ["", "Defaults (`--xla auto --precision auto`) against the best setting:", "",
                  "| model | auto picks | auto img/s | best setting | best img/s | auto / best | within 5% "
                  "| measured |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {v['model']} | xla={'on' if v['auto_xla'] else 'off'} {v['auto_precision']} | "
                  f"{v['auto_img_s']:.1f} | {v['best']} | {v['best_img_s']:.1f} | {v['ratio']:.3f} | "
                  f"{'yes' if v['within_5pct'] else 'NO'} | {v.get('measured', r['machine']['date'][:16])} |"
                  for v in r["auto"]]
        lines.append("")
    if "backbones" in res:
        r = res["backbones"]
        head("backbones", "1b. Every registered image model at 64 px (training img/s, batch 32, XLA off, medians "
                          "of %d interleaved epochs)" % r["repeats"])
        lines += ["| model | params | float32 img/s | bf16 img/s | `auto` picks | faster | auto within 5% "
                  "| command |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {x['model']} | {x['params'] / 1e6:.1f}M | {x['float32_img_s']:.1f} | {x['bf16_img_s']:.1f} | "
                  f"{x['auto_precision']} | {x['best_precision']} | {'yes' if x['auto_within_5pct'] else 'NO'} | "
                  f"`{x['command']}` |" for x in r["rows"]]
        lines.append("")
    if "pipeline" in res:
        r = res["pipeline"]
        head("pipeline", "2. Input-pipeline efficiency (CustomCNN, 48 px gray, batch 64, augmentation on)")
        lines += [f"Data: {r['data']}. {r['steps']} steps per timed epoch, medians of {r['repeats']}. "
                  f"TFRecords prepared in {r['prepare_seconds']:.0f} s. Command: `{r['command']}`", "",
                  "| source | fit img/s | / in-memory |", "|---|---|---|"]
        for k, v in r["results"].items():
            eff = 1.0 if k == "memory" else r["efficiency"][k]
            lines.append(f"| {k} | {v['img_s']:.1f} | {eff:.3f} |")
        lines.append("")
    if "memory" in res:
        r = res["memory"]
        head("memory", f"3. Memory on {r['images']:,} generated 48 px images (one training epoch, tiny CustomCNN)")
        lines += [f"Raw pixels: {r['raw_bytes_mb']:.0f} MB. Generated in {r['generate_seconds']:.0f} s (cached "
                  f"afterwards), TFRecords prepared in {r['prepare_seconds']:.0f} s.", "",
                  "| source | cache budget | train samples | peak RSS | epoch wall | img/s | command |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {x['source']} | {x['budget_mb']} MB | {x['train_samples']:,} | {x['peak_rss_mb']:.0f} MB | "
                  f"{x['wall_s']:.0f} s | {x['train_img_s'] or 0:.0f} | `{x['command']}` |" for x in r["rows"]]
        lines.append("")
    if "inference" in res:
        r = res["inference"]
        head("inference", f"4. Inference of the shipped model (`{r['model']}`, {r['params']:,} params)")
        lines += ["| format | batch | ms per call | faces/s |", "|---|---|---|---|"]
        lines += [f"| {x['format']} | {x['batch']} | {x['ms']:.2f} | {x['faces_s']:.0f} |" for x in r["latency"]]
        t = r["fer_package"]
        ours = r["ours"] if "blazeface" in r["ours"] else {"haar": r["ours"]}  # older results: Haar only
        speed = r["speedup_in_process"] if isinstance(r["speedup_in_process"], dict) else {
            "haar": r["speedup_in_process"]}

        def score(x):
            sc = x.get("score")
            return (f"{sc['found']}/{sc['photos']} | {100 * sc['accuracy_on_found']:.1f}% | "
                    f"{100 * sc['correct_per_photo']:.1f}%") if sc else "- | - | -"

        lines += ["", f"End to end on {r['n_photos']} photos of 640x480 ({r['photos']}; one face each, its position "
                  "and expression label known), detection + classification of the largest face, in the same run. "
                  "Found: the box centre lies on the pasted face; accuracy: expression label on the found faces; "
                  "correct: right label per photo.", "",
                  "| tool | detector | images/s | found | accuracy on found | correct per photo | speed vs `fer` |",
                  "|---|---|---|---|---|---|---|",
                  f"| fer_keras predict CLI (process start to CSV) | blazeface | {r['cli_img_s']:.1f} | | | | |"]
        for d, o in ours.items():
            lines.append(f"| fer_keras in-process (`predict_images`) | {d} | {o['img_s']:.1f} | {score(o)} | "
                         f"**{speed[d]:.2f}x** |")
        lines += [f"| `fer` {t['version']} in-process (`FER().detect_emotions`) | Haar (OpenCV) | {t['img_s']:.1f} "
                  f"| {score(t)} | 1.00x |", "", f"Command: `{r['command']}`", ""]
    if "time_to_accuracy" in res:
        r = res["time_to_accuracy"]
        head("time_to_accuracy", "5. Time to validation accuracy on FER2013 (PublicTest as val)")
        lines += [f"Run `{r['run']}`: {r['epochs']} epochs, best val accuracy {r['best_val_accuracy']:.4f}. "
                  f"Command: `{r['command']}`", "", "| val accuracy | first reached at epoch | wall time |",
                  "|---|---|---|"]
        for k in ("0.55", "0.60", "0.63", "0.65", "0.66", "0.68"):
            v = r["reached"].get(k)
            when = f"{v['seconds'] / 60:.1f} min" if v else "-"
            lines.append(f"| {k} | {v['epoch'] if v else 'not reached'} | {when} |")
        if r.get("tta_accuracy"):
            lines += ["", "The table follows the per-epoch validation (no test-time augmentation). The chosen "
                      "checkpoint with TTA: " + ", ".join(f"`--tta {m}` {a:.2%}" for m, a in r["tta_accuracy"].items())
                      + f" (`python evaluate_model.py --run {r['run']} --tta crops`)."]
        lines.append("")
    if "detection" in res:
        r = res["detection"]
        head("detection", "6. Low-light face detection (RetinaNet, KerasHub, trained from scratch on generated scenes)")
        lines += [f"`{r['config']}`, {r['params']:,} params, trained {r['train_seconds'] / 60:.1f} min "
                  f"({r['epochs_run']} epochs, limit {r['time_limit_minutes']} min); best val AP@0.5 "
                  f"{r['best_val_ap50']:.3f}. Command: `{r['command']}`", "",
                  "| held-out generated scenes | images | faces | AP@0.5 | AP@0.5:0.95 | recall at 1 FP/image |",
                  "|---|---|---|---|---|---|"]
        for k, name in (("held_out_320x240", "320x240 (training size, seed 2)"),
                        ("held_out_640x480", "640x480 (faces 2x smaller after letterboxing, seed 3)")):
            m = r[k]
            lines.append(f"| {name} | {m['images']} | {m['faces']} | {m['ap50']:.3f} | {m['ap50_95']:.3f} | "
                         f"{m['recall@1fppi']:.3f} |")
        lines += ["", f"Per-image latency at 640x480 (batch 1, median of 20): exported SavedModel with NMS "
                  f"{r['savedmodel_ms_640x480']:.0f} ms; the predict CLI's detector (`--detector`) "
                  f"{r['python_detector_ms_640x480']:.0f} ms.", ""]
    libs = [os.path.join(C.RESULTS_DIR, f) for f in ("detector_libs.json", "detector_libs_stock.json")]
    libs = [json.load(open(f)) for f in libs if os.path.isfile(f)]
    if libs:
        lines += ["## 7. KerasHub vs KerasCV RetinaNet (same backbone shape, batches and optimizer)", "",
                  f"{libs[0]['machine']}, {libs[0]['date']}; 240 generated 320x240 dark scenes for training, 48 "
                  "held-out (seed 1). Commands: " + ", ".join(f"`{r['command']}`" for r in libs), "",
                  "| library | head init | params | steps | train s | AP@0.5 | AP@0.5:0.95 | recall@1 FP/img | "
                  "precision / recall at score 0.5 |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (x for run in libs for x in run["results"]):
            lines.append(f"| {r['library']} | {r['init']} | {r['params']:,} | {r['steps']} | "
                         f"{r['train_seconds']:.0f} | {r['ap50']:.3f} | {r['ap50_95']:.3f} | {r['recall@1fppi']:.3f} | "
                         f"{r['precision@0.5score']:.2f} / {r['recall@0.5score']:.2f} |")
        lines += ["", "Measured while a FER2013 training run shared the CPU (train seconds inflated; AP depends on the "
                  "steps only). Adam 1e-3, no warmup, no schedule. After 120 steps none of KerasCV's scores reached "
                  "the 0.05 NMS threshold (its loss was still falling).", ""]
    history = os.path.join(C.RESULTS_DIR, "history.md")  # hand-kept: measurements as they were made
    if os.path.isfile(history):
        with open(history, encoding="utf-8") as f:
            lines += ["## History", "", f.read().rstrip(), ""]
    return "\n".join(lines)

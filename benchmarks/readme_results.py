"""Regenerates README.md's demo result rows from a fresh run of README's own demo commands.

    python benchmarks/readme_results.py [--check]

Runs `train_model.py --config configs/demo.yaml` and `evaluate_model.py --bootstrap 1000` in a temporary runs
folder, then rewrites the rows between `<!-- demo-results:start -->` and `<!-- demo-results:end -->` in README.md
with what was measured (the demo data and training are seeded, so a rerun on the same CPU gives the same accuracy
and CCCs; times vary with the machine's load). `--check` rewrites nothing: it exits 1 and prints both versions when
the README's accuracy / UAR / CCC numbers differ from the fresh run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from fer_keras.metrics import summary_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"


def run_demo(runs_dir: str) -> dict:
    """Trains and evaluates the demo config as README says; returns runtime.json and metrics.json content."""
    py = sys.executable
    subprocess.run([py, "train_model.py", "--config", "configs/demo.yaml", "--name", "demo-readme", "--runs-dir",
                    runs_dir, "--set", "train.verbose=0"], cwd=ROOT, check=True)
    run = os.path.join(runs_dir, "demo-readme")
    subprocess.run([py, "evaluate_model.py", "--run", run, "--bootstrap", "1000"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(run, "runtime.json")) as f:
        rt = json.load(f)
    with open(os.path.join(run, "metrics.json")) as f:
        m = json.load(f)
    return {"runtime": rt, "metrics": m, "load": os.getloadavg()[0], "cpus": os.cpu_count()}


def rows(res: dict) -> str:
    """The README table rows for one demo run (pure: numbers in, Markdown out)."""
    rt, m = res["runtime"], res["metrics"]
    e, va, ci = m["expression"], m["valence_arousal"], m.get("bootstrap_95ci", {})

    def value(spec, v, key):  # percentages with one decimal, other metrics with three; the CI where there is one
        scale, fmt = (100, "{:.1f}") if spec.percent else (1, "{:.3f}")
        c = ci.get(key) if key == "accuracy" else None  # README's row keeps to the one interval it always had
        return "–" if v is None else (fmt.format(scale * v) + ("%" if spec.percent else "")
                                      + (f" [{fmt.format(scale * c[0])}, {fmt.format(scale * c[1])}]" if c else ""))

    expr = ", ".join(f"{s.short or s.label} {value(s, e.get(s.key), s.key)}"
                     for s in summary_metrics("expression") if s.headline)
    dims = ", ".join(f"{d} {s.short or s.label} " + (value(s, va[d][s.key], f"{d}_{s.key}")
                                                      if isinstance(va, dict) and va.get(d) else "–")
                     for s in summary_metrics("valence_arousal") if s.headline for d in ("valence", "arousal"))
    return (f"| demo training | `python train_model.py --config configs/demo.yaml` | {rt['epochs_run']} epochs, "
            f"{rt['train_seconds']:.0f} s, {rt['train_images_per_second'] or 0:.0f} train img/s (load average "
            f"{res.get('load', 0):.1f} on {res.get('cpus')} cores at the end); best "
            f"{rt['monitor']} {rt['best']:.3f} |\n"
            f"| demo evaluation | `python evaluate_model.py --bootstrap 1000` | test ({e['num_samples']} faces, "
            f"{len(m['info']['class_names'])} classes): {expr}; {dims} |")


def _numbers(text: str):
    """The seeded (reproducible) numbers of the rows: accuracy/UAR/F1/κ/CCC, not times."""
    block = text.split("| demo evaluation |", 1)[-1]
    return re.findall(r"\d+\.\d+", block.split("\n", 1)[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare instead of rewriting")
    a = p.parse_args(argv)
    readme = os.path.join(ROOT, "README.md")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = rows(run_demo(os.path.join(tmp, "runs")))
    with open(readme, encoding="utf-8") as f:  # read after the run: README may have been edited meanwhile
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    old = text.split(START, 1)[1].split(END, 1)[0].strip()
    if a.check:
        if _numbers(old) != _numbers(fresh):
            print(f"README.md:\n{old}\nfresh run:\n{fresh}")
            return 1
        print("README demo numbers match a fresh run")
        return 0
    text = text.replace(old, fresh)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(text)
    print(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    acc_ci = ci.get("accuracy")
    acc = f"{100 * e['accuracy']:.1f}%" + (f" [{100 * acc_ci[0]:.1f}, {100 * acc_ci[1]:.1f}]" if acc_ci else "")
    vccc = f"{va['valence']['ccc']:.3f}" if isinstance(va, dict) and va.get("valence") else "–"
    accc = f"{va['arousal']['ccc']:.3f}" if isinstance(va, dict) and va.get("arousal") else "–"
    return (f"| demo training | `python train_model.py --config configs/demo.yaml` | {rt['epochs_run']} epochs, "
            f"{rt['train_seconds']:.0f} s, {rt['train_images_per_second'] or 0:.0f} train img/s (load average "
            f"{res.get('load', 0):.1f} on {res.get('cpus')} cores at the end); best "
            f"{rt['monitor']} {rt['best']:.3f} |\n"
            f"| demo evaluation | `python evaluate_model.py --bootstrap 1000` | test ({e['num_samples']} faces, "
            f"{len(m['info']['class_names'])} classes): accuracy {acc}, UAR {100 * e['uar']:.1f}%, macro F1 "
            f"{100 * e['macro_f1']:.1f}%, κ {e['kappa']:.3f}; valence CCC {vccc}, arousal CCC {accc} |")


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

"""Every Python block of README.md and docs/*.md marked `<!-- runnable -->` runs, in a fresh folder that holds the
files the examples name (group.jpg: three faces; clip.mp4: one face moving), on the built-in demo data."""

import glob
import os
import re
import subprocess
import sys

import cv2
import matplotlib
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOPPER = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
BLOCK = re.compile(r"<!-- runnable -->\s*```python\n(.*?)```", re.S)


def runnable_blocks():
    found = []
    for path in [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]:
        with open(path, encoding="utf-8") as f:
            for i, code in enumerate(BLOCK.findall(f.read())):
                found.append(pytest.param(code, id=f"{os.path.basename(path)}-{i}"))
    return found


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    face = cv2.imread(HOPPER)[60:420, 110:410]
    img = np.full((375, 500, 3), 120, np.uint8)
    for x, y, w in [(20, 60, 130), (190, 100, 100), (330, 40, 150)]:
        f = cv2.resize(face, (w, int(w * 1.2)), interpolation=cv2.INTER_AREA)
        img[y:y + f.shape[0], x:x + w] = f
    cv2.imwrite(str(folder / "group.jpg"), img)
    small = cv2.resize(face, (120, 144), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (480, 360))
    for i in range(20):
        frame = np.full((360, 480, 3), 90, np.uint8)
        frame[100:244, 60 + 5 * i:180 + 5 * i] = small
        writer.write(frame)
    writer.release()
    return folder


def test_the_docs_have_runnable_blocks():
    names = [p.id for p in runnable_blocks()]
    assert any(n.startswith("README.md") for n in names) and any(n.startswith("training.md") for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("code", runnable_blocks())
def test_runnable_block(code, example_files, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=example_files, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_readme_is_short_and_starts_with_the_two_fresh_machine_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert len(text.encode()) <= 10 * 1024
    first, second = re.findall(r"```bash\n(.*?)```", text, re.S)[:2]
    assert "train_model.py --config configs/demo.yaml" in first and "pytest" in second
    for link in re.findall(r"\]\(((?:docs|fer_keras)/[^)#]+)\)", text):  # every linked guide exists
        assert os.path.isfile(os.path.join(ROOT, link)), link


def test_bad_input_corpus_page_counts_the_collected_cases():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "gen_bad_input.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layout_page_is_generated_from_the_package(tmp_path):
    """docs/layout.md is the package's own description (module docstrings, registries): it cannot go stale, and a
    changed docstring without a regenerated page fails."""
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    import gen_layout

    proc = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "gen_layout.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = gen_layout.layout_markdown()
    assert "| `predict.py` |" in text and "`DETECTORS`" in text and "`auto`" in text
    assert gen_layout.first_sentence("Thing: does x. More.\n\nLater.") == "Thing: does x."

"""README's demo result rows are what a fresh run of README's demo commands gives (seeded: same numbers on the
same CPU). Slow (a full demo training): `pytest --run-slow tests/test_readme_numbers.py`."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_readme_demo_rows_match_a_fresh_run():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "readme_results.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_seed_rows_state_the_range_that_config_and_evaluate_repeat(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from readme_results import config_range, seeds_row, stated_range

    from fer_keras.expression.evaluate import expected_range_line
    from fer_keras.config import load_config
    from fer_keras.errors import ConfigError

    runs = [{"seed": s, "metrics": {"expression": {"accuracy": a, "num_samples": 112}}}
            for s, a in ((42, 0.982), (1, 0.964), (2, 0.991))]
    row = seeds_row(runs)
    assert "mean 97.9%" in row and "range 96.4-99.1%" in row and "seeds 42, 1, 2" in row
    # widened by the Wilson 95% interval of 112 faces: 0.964 -> 0.9114, 0.991 -> 0.9980
    assert stated_range("intro\n" + row + "\n") == (91.1, 99.9)
    assert stated_range("no seeds row") is None
    # The config states the range README states (the README check compares them); evaluate prints it.
    assert (stated_range(open(os.path.join(ROOT, "README.md")).read()) or ()) == tuple(config_range())
    assert "within the range" in expected_range_line([0.964, 0.991], 0.98)
    assert "below the range" in expected_range_line([0.964, 0.991], 0.5)
    assert expected_range_line([], 0.5) is None
    for bad in ("0.9,0.8", "0.9", "0.5,1.5"):
        with pytest.raises(ConfigError, match="train.expected_accuracy"):
            load_config(None, [f"train.expected_accuracy={bad}"])

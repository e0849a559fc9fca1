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

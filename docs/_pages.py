"""Writing or checking a generated docs page (docs/gen_api.py, docs/gen_bad_input.py, docs/gen_layout.py)."""

from __future__ import annotations

import os


def write_or_check(path: str, text: str, check: bool, command: str) -> int:
    """Writes `text` to `path`, or with `check` compares them; returns the exit code (1: out of date)."""
    name = os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.abspath(path))))
    if check:
        with open(path, encoding="utf-8") as f:
            same = f.read() == text
        print(f"{name} is up to date" if same else f"{name} differs: run {command}")
        return 0 if same else 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0

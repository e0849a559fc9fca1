"""What every command line shares: the argument parser with the project's error style (`CliParser`)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from fer_keras.errors import EXIT_USAGE, nearest_hint


class CliParser(argparse.ArgumentParser):
    """argparse with the project's error style: a wrong flag or value is one `error:` line naming it and, for an
    unknown flag, the nearest valid one (by spelling, or by `synonyms`: other tools' names for the same option,
    e.g. `--threshold` for `--min-score`), instead of the full usage text; exit code 2."""

    def __init__(self, *args, synonyms: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.synonyms = synonyms or {}

    def nearest(self, flag: str) -> Optional[str]:
        import difflib

        name = flag.split("=", 1)[0]
        if name in self.synonyms:
            return self.synonyms[name]
        options = [o for o in self._option_string_actions if o.startswith("--")]
        near = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        return near[0] if near else None

    def error(self, message: str):
        import re

        m = re.match(r"unrecognized arguments: (\S+)", message)
        if m:
            near = self.nearest(m.group(1))
            message = f"unknown option {m.group(1)}" + (f" (did you mean {near}?)" if near else "")
        m = re.match(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if m:  # argparse lists the choices; name the nearest too
            choices = re.findall(r"'([^']*)'", m.group(3))
            message += nearest_hint(m.group(2), choices)
        print(f"error: {self.prog}: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

"""Writes docs/api.md from the docstrings of the public Python API (`fer_keras.__all__`).

    python docs/gen_api.py          # rewrite docs/api.md
    python docs/gen_api.py --check  # exit 1 when docs/api.md differs (tests/test_api.py runs this)
"""

from __future__ import annotations

import inspect
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def api_markdown() -> str:
    """The API page: the module's overview, then each public name with its signature and docstring."""
    import fer_keras
    from fer_keras import api

    out = ["# Python API", "", "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.", "",
           _doc(api), ""]
    for name in fer_keras.__all__:
        obj = getattr(api, name)
        sig = str(inspect.signature(obj)).replace("'", "")
        out += [f"## `fer_keras.{name}{sig}`", "", _doc(obj), ""]
        if inspect.isclass(obj):
            for mname, member in inspect.getmembers(obj):
                if mname.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                    continue
                if isinstance(member, property):
                    out += [f"### `{name}.{mname}` (property)", "", _doc(member.fget), ""]
                else:
                    msig = str(inspect.signature(member)).replace("'", "")
                    out += [f"### `{name}.{mname}{msig}`", "", _doc(member), ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from _pages import write_or_check

    return write_or_check(os.path.join(HERE, "api.md"), api_markdown(), "--check" in argv, "python docs/gen_api.py")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    raise SystemExit(main())

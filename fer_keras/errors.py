"""User-facing errors.

Everything that is the user's fault (a bad file, an unknown name, a wrong config key) raises a subclass of
`FerError` with a one-line message that names the file/row/key. The CLIs catch `FerError`, print the message and
exit with code 2, so users never see a traceback for bad input.
"""

import functools
import sys

EXIT_USAGE = 2


class FerError(Exception):
    """Base class for errors caused by user input; the message is shown as is."""


class ConfigError(FerError):
    """Unknown or invalid configuration key or value."""


class DataError(FerError):
    """Unreadable, malformed or inconsistent dataset input."""


class ModelError(FerError):
    """Unknown model name, unreadable weights or model file."""


def cli_main(fn):
    """Decorates a CLI `main(argv)` so that `FerError` becomes a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FerError as e:
            msg = str(e).replace("\n", " ")
            print(f"error: {msg}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper

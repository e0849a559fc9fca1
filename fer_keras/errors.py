"""User-facing errors.

Everything that is the user's fault (a bad file, an unknown name, a wrong config key) raises a subclass of
`FerError` with a one-line message that names the file/row/key. The CLIs catch `FerError`, print the message and
exit with code 2, so users never see a traceback for bad input. `FerError` is a `ValueError`, so Python callers of
the API (`fer_keras.analyze`, `fer_keras.train`, ...) catch bad input the usual way.
"""

import contextlib
import csv
import functools
import os
import sys
import tempfile
import threading
import warnings

EXIT_USAGE = 2


class FerError(ValueError):
    """Base class for errors caused by user input; the message is shown as is."""


class ConfigError(FerError):
    """Unknown or invalid configuration key or value."""


class DataError(FerError):
    """Unreadable, malformed or inconsistent dataset input."""


class ModelError(FerError):
    """Unknown model name, unreadable weights or model file."""


# Python warnings from libraries that say nothing to a user of the CLIs (they are about our calls, not their data).
_LIBRARY_NOISE = (
    r"\s*Warning: tf.lite.Interpreter is deprecated",  # TF 2.21: the replacement (ai_edge_litert) is not pinned
)


_STDERR_LOCK = threading.RLock()


@contextlib.contextmanager
def stderr_captured():
    """Redirects file descriptor 2 (where TensorFlow's C++ logging writes) to a temporary file; yields the file.

    One thread at a time (fd 2 belongs to the process): two threads interleaving their save and restore would
    leave stderr pointing at a closed temporary file."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield tmp
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)


def quiet_tensorflow_import() -> None:
    """Imports TensorFlow with its load-time log lines hidden (oneDNN and CPU-feature notices, twice each).

    TF_CPP_MIN_LOG_LEVEL cannot hide them (they are printed while the shared libraries load), and they would
    otherwise precede every one-line error a CLI prints. Set FER_KERAS_TF_LOGS=1 to see them. If the import fails,
    the hidden lines are printed: they explain why.
    """
    if "tensorflow" in sys.modules or os.environ.get("FER_KERAS_TF_LOGS"):
        return
    captured = ""
    try:
        with stderr_captured() as tmp:
            try:
                import tensorflow  # noqa: F401  (imported for its side effect: loaded while fd 2 is captured)
            except BaseException:
                tmp.seek(0)  # read while the capture file is still open
                captured = tmp.read().decode("utf-8", "replace")
                raise
    except KeyboardInterrupt:  # Ctrl-C during the import: the CLI's one line, not TensorFlow's load noise
        raise
    except BaseException:
        sys.stderr.write(captured)  # why the import failed
        raise


def describe_os_error(e: BaseException) -> str:
    """One line for an OS/encoding error: `<file>: <what>` where the error knows the file."""
    if isinstance(e, OSError) and e.filename is not None:
        what = e.strerror or type(e).__name__
        target = f" -> {e.filename2}" if e.filename2 else ""
        return f"{e.filename}{target}: {what}"
    if isinstance(e, UnicodeDecodeError):
        return f"a text file is not UTF-8 ({e.reason} at byte {e.start}); save it as UTF-8"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


@contextlib.contextmanager
def reading(path: str, what: str = "cannot read it"):
    """Errors while reading the user's file `path` inside this block become one DataError naming it.

    Catches what a malformed file raises in the standard library and NumPy (OS errors, undecodable text, CSV and
    JSON syntax, bad values); errors that are already `FerError` pass through unchanged.
    """
    try:
        yield
    except FerError:
        raise
    except (OSError, UnicodeError, ValueError, csv.Error, EOFError, KeyError, TypeError) as e:
        if isinstance(e, UnicodeDecodeError):
            detail = f"not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
        else:
            detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise DataError(f"{path}: {what} ({detail})") from None


def nearest_hint(value, valid) -> str:
    """` (did you mean 'x'?)` for the valid name nearest to `value` by spelling, or '' when none is near."""
    import difflib

    near = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def choice_error(what: str, value, valid) -> "ConfigError":
    """The one-line error for a value that is none of `valid`: names the valid values and the nearest one."""
    valid = [str(v) for v in valid]
    return ConfigError(f"{what} {value!r}: valid: {', '.join(valid)}" + nearest_hint(value, valid))


def cli_main(fn=None, *, tensorflow: bool = True):
    """Decorates a CLI `main(argv)`: `FerError` becomes a one-line message and exit code 2, and the console shows
    only what the command says (TensorFlow's load-time logging and known library warnings are hidden).

    `tensorflow=False` (`@cli_main(tensorflow=False)`): the CLI does not import TensorFlow up front (predict with
    LiteRT starts in about a second); code that needs it later calls `quiet_tensorflow_import()` first.
    """
    if fn is None:
        return functools.partial(cli_main, tensorflow=tensorflow)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # Line-buffered even into a file or pipe (`... > train.log`): a long run's log shows each epoch as it ends.
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                with contextlib.suppress(Exception):
                    stream.reconfigure(line_buffering=True)
        for pattern in _LIBRARY_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            if tensorflow and not any(a in ("-h", "--help") for a in (args[0] if args and args[0] else sys.argv[1:])):
                quiet_tensorflow_import()
            return fn(*args, **kwargs)
        except FerError as e:
            msg = str(e).replace("\n", " ")
            print(f"error: {msg}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
        except (OSError, UnicodeError, csv.Error) as e:
            # The system refused a file the user named (missing, a folder, read-only, full disk, not UTF-8 ...):
            # its message names the file. Anything else is a bug in fer_keras and keeps its traceback.
            if os.environ.get("FER_KERAS_DEBUG"):
                raise
            print(f"error: {describe_os_error(e)}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper

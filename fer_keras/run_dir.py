"""The run directory: the contract between train → evaluate → visualize → export → predict.

Every run (expression or detection) is one folder under `train.runs_dir`; this module owns its file names and how
it is created, resumed, locked and finished. What is in it:

    config.yaml        the resolved config (read back to evaluate, visualize, export and resume)
    labels.json        label preset and class names in output order (expression runs)
    state.json         {"status": "running" | "stopped" | "finished"}; a finished run is never overwritten;
                       a stopped one (train.time_limit_minutes) resumes with --resume
    model.keras        the best model by the monitored validation metric (written atomically)
    history.csv        per-epoch logs (appended across resumes)
    metrics.json       test/val metrics of the best model
    runtime.json       timings, device, precision, versions
    data_summary.json  samples per split and class
    backup/            Keras BackupAndRestore state of an unfinished run
    eval/<split>/      evaluate_model.py output;  plots/  visualize_results.py output;  export/  exports
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from fer_keras.config import Config, config_from_dict, read_yaml, save_config
from fer_keras.errors import ConfigError, reading
from fer_keras.io_utils import atomic_path, atomic_write_text, slug
from fer_keras.tasks import TASKS, Task

CONFIG = "config.yaml"
LABELS = "labels.json"
STATE = "state.json"
MODEL = "model.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
RUNTIME = "runtime.json"
DATA_SUMMARY = "data_summary.json"
BACKUP = "backup"
EVAL = "eval"
EXPORT = "export"
PLOTS = "plots"


def write_json(path: str, obj) -> None:
    """Atomic, indented JSON; NumPy scalars become Python numbers, anything else unknown its `str`."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


@dataclass(frozen=True)
class RunDir:
    """One run directory (see the module docstring); `RunDir(path)` does not touch the disk."""

    path: str

    def file(self, name: str) -> str:
        """Path of a file (or folder) of this run."""
        return os.path.join(self.path, name)

    @property
    def config_path(self) -> str:
        return self.file(CONFIG)

    @property
    def model_path(self) -> str:
        return self.file(MODEL)

    @property
    def history_path(self) -> str:
        return self.file(HISTORY)

    def is_run(self) -> bool:
        """True when the folder holds a run (it has a config.yaml)."""
        return os.path.isfile(self.config_path)

    @classmethod
    def open(cls, path: str) -> "RunDir":
        """An existing run; the error names the folder when it is not one."""
        run = cls(path)
        if not run.is_run():
            raise ConfigError(f"{path}: not a run directory (no {CONFIG})")
        return run

    # --- reading ---

    def config(self) -> Config:
        """The run's resolved config."""
        return config_from_dict(read_yaml(self.config_path), source=self.config_path)

    def task(self) -> str:
        """`expression` or `detection` (expression for a folder without a config)."""
        return read_yaml(self.config_path).get("task", "expression") if self.is_run() else "expression"

    def read_json(self, name: str, default: Any = None) -> Any:
        """A JSON file of the run, or `default` when it does not exist."""
        path = self.file(name)
        if not os.path.isfile(path):
            return default
        with reading(path, "not valid JSON (rerun the command that writes it)"), open(path, encoding="utf-8") as f:
            return json.load(f)

    def status(self) -> Optional[str]:
        """`running`, `stopped` (by the time limit, resumable), `finished`, or None for a folder without
        state.json."""
        state = self.read_json(STATE)
        return state.get("status") if isinstance(state, dict) else None

    def best_so_far(self, monitor: str, mode: str, before_epoch: Optional[int] = None) -> Optional[float]:
        """The best value of `monitor` in history.csv (None before the first epoch), over the epochs before
        `before_epoch` when given (a resumed run: the epochs its backup holds)."""
        if not os.path.isfile(self.history_path):
            return None
        with open(self.history_path, newline="") as f:
            vals = [float(r[monitor]) for r in csv.DictReader(f) if r.get(monitor) not in (None, "", "nan")
                    and (before_epoch is None or (str(r.get("epoch", "")).isdigit()
                                                  and int(r["epoch"]) < before_epoch))]
        if not vals:
            return None
        return max(vals) if mode == "max" else min(vals)

    def resume_epoch(self) -> int:
        """The epoch Keras' BackupAndRestore resumes at (0 for a fresh run)."""
        meta = self.read_json(os.path.join(BACKUP, "training_metadata.json"), {})
        return int(meta.get("epoch", 0))

    def trim_history(self, epochs: int) -> int:
        """Keeps the history.csv rows of the first `epochs` epochs (atomically); returns how many rows went."""
        if not os.path.isfile(self.history_path):
            return 0
        with open(self.history_path, newline="") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2 or "epoch" not in rows[0]:
            return 0
        col = rows[0].index("epoch")
        keep = [r for r in rows[1:] if r and r[col].isdigit() and int(r[col]) < epochs]
        dropped = len(rows) - 1 - len(keep)
        if dropped:
            with atomic_path(self.history_path) as tmp, open(tmp, "w", newline="") as f:
                csv.writer(f).writerows([rows[0], *keep])
        return dropped

    # --- writing ---

    def write_json(self, name: str, obj) -> str:
        write_json(self.file(name), obj)
        return self.file(name)

    def finish(self) -> None:
        self.write_json(STATE, {"status": "finished"})


def run_task(path: str) -> Task:
    """The task of a run folder (its config.yaml names it; `expression` for a folder without one)."""
    return TASKS.get(RunDir(path).task())


def check_named_run(cfg: Config) -> bool:
    """For a named run that already exists: True (resume) if unfinished with the same config; raises if it finished
    or was started differently. False when there is nothing to resume. Runs before any data is read."""
    t = cfg.train
    if not t.name:
        return False
    run = RunDir(run_folder(t.runs_dir, t.name))
    if not (os.path.isdir(run.path) and os.listdir(run.path)):
        return False
    if not os.path.isfile(run.file(STATE)):
        raise ConfigError(f"{run.path} exists and is not a fer_keras run; choose another --name")
    if run.status() == "finished":
        raise ConfigError(f"run {run.path} already finished; choose another --name (runs are never overwritten)")
    if _comparable(run.config()) != _comparable(cfg):
        raise ConfigError(f"{run.path} was started with a different config; resume it with the same command "
                          "or choose another --name")
    return True


# Keys a resumed run may change: how long this sitting trains and what it prints, not what is learned.
RESUME_KEYS = ("train.time_limit_minutes", "train.verbose", "train.tensorboard")


def _comparable(cfg: Config) -> dict:
    d = cfg.to_dict()
    for key in ("name", "runs_dir", *(k.split(".", 1)[1] for k in RESUME_KEYS)):  # the folder says which run it is
        d["train"].pop(key, None)
    return d


def run_folder(runs_dir: str, name: str) -> str:
    """The folder of the run `name`: an existing folder of exactly that name (`--resume 'runs/my run'` continues
    that folder, spaces and all), else the file-name-safe `slug(name)` that a new run gets."""
    exact = os.path.join(runs_dir, name)
    if name not in (".", "..") and os.sep not in name and os.path.isdir(exact):
        return exact
    return os.path.join(runs_dir, slug(name))


def resume_command(folder: str) -> str:
    """The command that continues a run, its path quoted for a POSIX shell (a space in "My Drive" stays one word)."""
    return f"python train_model.py --resume {shlex.quote(folder)}"


def new_run_dir(runs_dir: str, name: str | None, default_stem: str) -> str:
    """Creates and returns a fresh run directory; an existing one is never reused silently.

    With an explicit `name`, the caller decides what an existing directory means (resume or error); without one,
    a timestamped name is made unique with a numeric suffix.
    """
    os.makedirs(runs_dir, exist_ok=True)
    if name:
        return run_folder(runs_dir, name)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{slug(default_stem)}-{stamp}"
    for i in range(1000):
        path = os.path.join(runs_dir, stem if i == 0 else f"{stem}-{i}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run directory under {runs_dir}")


def newest_run(runs_dir: str = "runs") -> str | None:
    """The most recently modified *finished* run directory, or None.

    Runs that are still training or were interrupted are skipped (scoring half a training silently would mislead);
    when the newest run is such a one, a note on stderr says which and how to continue it.
    """
    if not os.path.isdir(runs_dir):
        return None
    cands = [os.path.join(runs_dir, d) for d in os.listdir(runs_dir)]
    cands = sorted((d for d in cands if RunDir(d).is_run()), key=os.path.getmtime, reverse=True)
    done = [d for d in cands if RunDir(d).status() in ("finished", None)]  # None: runs from before state.json
    if cands and (not done or cands[0] != done[0]):
        newest = cands[0]
        writer = run_writer(newest)
        then = (f"it is being trained right now by {writer}" if writer else
                f"continue it with: {resume_command(newest)}")
        print(f"note: the newest run {newest} is unfinished ({RunDir(newest).status()}); "
              + (f"using the newest finished run {done[0]}. " if done else "no finished run. ") + then,
              file=sys.stderr)
    return done[0] if done else None


def _lock_path(folder: str) -> str:
    folder = os.path.abspath(folder)
    return os.path.join(os.path.dirname(folder), f".{os.path.basename(folder)}.lock")


@contextlib.contextmanager
def run_lock(folder: str):
    """Holds an exclusive lock on the run folder `folder` (which need not exist yet) for the duration of the block.

    A second process that tries to train the same run at the same time (a named run started twice, `--resume` of a
    run that is training, named or not) gets a ConfigError at once: two writers would interleave history.csv and
    checkpoints and corrupt the run for good. The lock is an OS file lock (`flock`) on `.<folder>.lock` beside the
    folder, so it is released when the process ends, even when killed: a stale lock file is simply taken over.
    Where `fcntl` does not exist (Windows) no lock is taken.
    """
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    path = _lock_path(folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise ConfigError(f"run {folder} is being trained right now by {owner}; wait for it to end (or stop "
                              "it) before training it again, or choose another --name") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            # Removed while still held, so the runs folder keeps no lock files (a process that opened the old
            # file in between fails its non-blocking lock now, or locks a file nobody else will use).
            with contextlib.suppress(OSError):
                os.remove(path)
            fcntl.flock(f, fcntl.LOCK_UN)


def run_writer(folder: str) -> Optional[str]:
    """Who is training the run right now (`process <pid>`), or None when no live process holds its lock."""
    path = _lock_path(folder)
    if fcntl is None or not os.path.isfile(path):  # pragma: no cover - not POSIX
        return None
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return f.read().strip() or "another process"
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def named_run_lock(cfg: Config):
    """`run_lock` for a named run (taken before its folder is made or read), a no-op context for an unnamed one
    (locked by `run_training` once its fresh folder exists)."""
    return run_lock(run_folder(cfg.train.runs_dir, cfg.train.name)) if cfg.train.name else contextlib.nullcontext()


def run_training(cfg: Config, default_stem: str, load: Callable[[], Any], start: Callable[[RunDir, Any], None],
                 body: Callable[[RunDir, Any, bool], None]) -> str:
    """The life of a training run, shared by expression and detection training; returns the run directory.

    1. Lock a named run (`run_lock`) and decide whether it resumes (`check_named_run`), before reading any data.
    2. `load()` the data, and only then create the folder (bad data leaves no half-made run behind).
    3. A new run writes config.yaml and what `start(run, data)` adds; the state becomes `running`.
    4. `body(run, data, resuming)` trains. If it fails before anything was saved (no backup/, no model.keras), a new
       run is removed: it has nothing to resume, and a folder marked running would trip later commands.
    5. The state becomes `finished` (a finished run is never overwritten), or `stopped` when a time limit ended
       it with its backup kept (`--resume` continues it).

    Args:
        cfg: the resolved config (`train.runs_dir`, `train.name`).
        default_stem: the name stem of an unnamed run (a timestamp is appended).
        load: reads the data.
        start: writes a new run's first files besides config.yaml.
        body: trains.
    """
    with contextlib.ExitStack() as locks:
        locks.enter_context(named_run_lock(cfg))
        resuming = check_named_run(cfg)
        data = load()
        run = RunDir(new_run_dir(cfg.train.runs_dir, cfg.train.name, default_stem))
        if not cfg.train.name:  # a fresh unnamed run: locked as soon as it exists, so `--resume` of it is refused
            locks.enter_context(run_lock(run.path))
        os.makedirs(run.path, exist_ok=True)
        if not resuming:
            save_config(cfg, run.config_path)
            start(run, data)
        run.write_json(STATE, {"status": "running"})
        try:
            body(run, data, resuming)
        except BaseException as e:
            if not resuming and not os.path.exists(run.file(BACKUP)) and not os.path.isfile(run.model_path):
                shutil.rmtree(run.path, ignore_errors=True)
            elif isinstance(e, KeyboardInterrupt):  # Ctrl-C or SIGTERM (cli_train turns it into one)
                print(f"interrupted: {run.path} keeps its finished epochs; continue it with:\n"
                      f"  {resume_command(run.path)}", file=sys.stderr)
            raise
        if os.path.exists(run.file(BACKUP)):  # kept by a time-limited stop (fitting.RunBackup): resumable
            run.write_json(STATE, {"status": "stopped"})
            print(f"continue it with: {resume_command(run.path)}", flush=True)
        else:
            run.finish()
        return run.path

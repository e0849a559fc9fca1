"""Training on several machines (`train.strategy=multiworker`): tf.distribute's `MultiWorkerMirroredStrategy`.

Every worker runs the same command with its own `TF_CONFIG` (`{"cluster": {"worker": [host:port, ...]}, "task":
{"type": "worker", "index": i}}`). What this module decides:

- The strategy is created first thing in the training process (`start_worker`), before TensorFlow runs any op:
  collective ops can only be configured at program start-up.
- Worker 0 is the chief: it writes the run folder (config, checkpoints, history, reports). The others run the same
  callbacks (a save reads variables collectively, so every worker must save) into
  `<runs_dir>/.workers/<name>.worker<i>`, which they remove when the run finishes. The name is fixed by `--name`
  (required), so a restarted worker finds its backup.
- Data: each worker reads its share of every global batch (`data.batch_size` is the global batch); the auto-shard
  policy is set explicitly (`shard_options`): FILE for TFRecord shards when there are at least as many files as
  workers, DATA otherwise. Validation is sharded the same way and its metrics are averaged over the workers, so every
  worker sees the same numbers (and takes the same checkpoint and early-stopping decisions).
- A lost worker stops the others with one line; restarting every worker with the same command resumes from the
  last finished epoch (`BackupAndRestore` in each worker's folder).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import List, Optional, Sequence

from fer_keras.errors import ConfigError
from fer_keras.tasks import task_of, tasks_with

WORKERS_DIR = ".workers"
_STRATEGY = None


@dataclass
class Worker:
    """This process's place in the cluster."""

    index: int
    count: int

    @property
    def chief(self) -> bool:
        return self.index == 0

    def describe(self) -> str:
        return f"worker {self.index} of {self.count}" + (" (chief: writes the run)" if self.chief else "")


def tf_config(hosts: Sequence[str], index: int) -> str:
    """The `TF_CONFIG` of worker `index` in a cluster of `hosts` ("host:port" each)."""
    return json.dumps({"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}})


def local_cluster(n: int = 2) -> List[str]:
    """`TF_CONFIG` values for `n` workers on this host, on free loopback ports (tests, benchmarks, trying it out)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    hosts = [f"localhost:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    return [tf_config(hosts, i) for i in range(n)]


def parse_tf_config(text: Optional[str] = None) -> Worker:
    """This worker's index and the number of workers from `TF_CONFIG` (default: the environment variable); a
    one-line ConfigError says what is wrong with it."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise ConfigError("train.strategy=multiworker needs the TF_CONFIG environment variable: "
                          '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
                          '"index": 0}}')
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(conf, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    workers = (conf.get("cluster") or {}).get("worker") if isinstance(conf.get("cluster"), dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ConfigError("TF_CONFIG names no worker list: expected cluster.worker = [\"host:port\", ...]")
    task = conf.get("task")
    if not isinstance(task, dict) or task.get("type") != "worker":
        raise ConfigError("TF_CONFIG task must be {\"type\": \"worker\", \"index\": N} (chief/evaluator/ps tasks "
                          "are not used here: worker 0 is the chief)")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG task index {index!r} is out of range: the cluster has {len(workers)} "
                          f"worker(s), indices 0..{len(workers) - 1}")
    return Worker(index, len(workers))


def make_multiworker_strategy():
    """Creates (once) the `MultiWorkerMirroredStrategy`; must run before TensorFlow executes any op."""
    global _STRATEGY
    if _STRATEGY is None:
        import tensorflow as tf

        from fer_keras.keras_compat import patch_multiworker_fit

        try:
            _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise ConfigError(f"cannot start multi-worker training here ({str(e).splitlines()[0]}): create the "
                              "strategy before any TensorFlow op (python train_model.py does)") from None
        patch_multiworker_fit()
    return _STRATEGY


def start_worker(cfg) -> Worker:
    """Checks TF_CONFIG and the run name, creates the strategy, and points a non-chief worker's run folder under
    `<runs_dir>/.workers/`. Call it first thing in the training process."""
    worker = parse_tf_config()
    if not task_of(cfg).multiworker:
        raise ConfigError(f"train.strategy=multiworker trains {' and '.join(tasks_with('multiworker'))} runs; "
                          f"{cfg.task} runs train on one machine")
    if not cfg.train.name:
        raise ConfigError("train.strategy=multiworker needs --name: every worker, and a restart after a failure, "
                          "must agree on the run")
    if cfg.train.time_limit_minutes:
        raise ConfigError("train.time_limit_minutes cannot be used with train.strategy=multiworker (each worker's "
                          "clock would stop it at a different step); use train.epochs")
    make_multiworker_strategy()
    if not worker.chief:
        cfg.train.runs_dir = os.path.join(cfg.train.runs_dir, WORKERS_DIR)
        cfg.train.name = f"{cfg.train.name}.worker{worker.index}"
        # Never read (the chief's state is broadcast at the start, see follow_the_chief_callback); a worker killed
        # while writing it would leave one that cannot be read.
        shutil.rmtree(os.path.join(cfg.train.runs_dir, cfg.train.name, "backup"), ignore_errors=True)
    print(f"{worker.describe()} | run folder {os.path.join(cfg.train.runs_dir, cfg.train.name)}", flush=True)
    return worker


def finish_worker(worker: Worker, run_dir: str) -> None:
    """A non-chief worker removes its folder once the run has finished (the chief's folder is the run)."""
    if not worker.chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        parent = os.path.dirname(run_dir)
        if os.path.basename(parent) == WORKERS_DIR and os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)


def shard_options(num_files: int = 0, num_workers: int = 1):
    """`tf.data.Options` with the auto-shard policy set: FILE when the data are at least `num_workers` files
    (TFRecord shards: each worker reads whole files), DATA otherwise (every worker reads everything and keeps its
    share of each batch)."""
    import tensorflow as tf

    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policy.FILE if num_files and num_files >= num_workers else policy.DATA)
    return options


def lost_worker_message(run_dir: str, e: BaseException) -> str:
    """One line for a collective op that failed because a peer died or stopped responding."""
    import re

    text = getattr(e, "message", None) or str(e)
    # TensorFlow lists the dead tasks after "unhealthy" (other task names in the message are the reporters).
    listed = text.split("unhealthy", 1)[1] if "unhealthy" in text else text
    own = str(parse_tf_config().index) if os.environ.get("TF_CONFIG") else None
    tasks = sorted(set(re.findall(r"/job:worker/(?:replica:\d+/)?task:(\d+)", listed)) - {own}, key=int)
    who = f"worker {', '.join(tasks)} stopped responding" if tasks else \
        f"{type(e).__name__}: {text.strip().splitlines()[0][:160]}"
    return (f"training stopped: a worker was lost ({who}); restart every worker with the same command: the run "
            f"{run_dir} resumes from its last finished epoch")


def weights_digest(model) -> str:
    """A short hash of a model's weights: every worker prints it at the end, and in-sync replicas print the same."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()[:16]


def broadcast_from_chief(strategy, tensors):
    """The chief's values of `tensors` on every worker: an all-reduce sum to which only global replica 0
    contributes (tf.distribute has no broadcast for eager values)."""
    import tensorflow as tf

    def contribute(*values):
        src = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        return [v * tf.cast(src, v.dtype) for v in values]

    per_replica = strategy.run(contribute, args=tuple(tensors))
    return [strategy.reduce("SUM", p, axis=None) for p in per_replica]


def follow_the_chief_callback():
    """Keras callback for multi-worker runs, placed after `BackupAndRestore`: at the start of training every worker
    takes the chief's weights, optimizer state and starting epoch, so the replicas are in sync whatever each worker
    restored (a worker killed while writing its backup leaves an unreadable one; non-chief backups are therefore
    never read: `start_worker` removes them). Private Keras: `Model._initial_epoch`, which `BackupAndRestore` sets."""
    import keras
    import tensorflow as tf

    class FollowTheChief(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            strategy = self.model.distribute_strategy
            opt = self.model.optimizer
            if opt is not None and not opt.built:
                with strategy.scope():
                    opt.build(self.model.trainable_variables)
            variables = list(self.model.variables) + (list(opt.variables) if opt is not None else [])
            epoch = tf.constant(float(self.model._initial_epoch or 0), tf.float32)
            values = broadcast_from_chief(strategy, [tf.convert_to_tensor(v.value) for v in variables] + [epoch])
            for v, value in zip(variables, values[:-1]):
                v.assign(value)
            self.model._initial_epoch = int(round(float(values[-1]))) or None

    return FollowTheChief()

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


def config_digest(cfg) -> dict:
    """What every worker must agree on: the resolved config (a worker's own run folder aside)."""
    d = cfg.to_dict()
    for key in ("name", "runs_dir", "verbose"):
        d["train"].pop(key, None)
    return {f"{section}.{k}": v for section, values in d.items() if isinstance(values, dict)
            for k, v in values.items()} | {k: v for k, v in d.items() if not isinstance(v, dict)}


def _differences(mine: dict, theirs: dict) -> List[str]:
    return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


def rendezvous(cfg, worker: Worker, hosts: Sequence[str], wait_seconds: float = 300.0, say=print) -> None:
    """Meets every other worker before TensorFlow starts, on the workers' own TF_CONFIG ports.

    TensorFlow's own start-up fails unhelpfully: a busy port is an `UnknownError` that never says "port", a missing
    peer is waited for in silence, and workers started with different commands end in gRPC errors. Here each
    worker first listens on its port (busy: one line naming it), then asks every peer for its resolved config until
    each answers, saying whom it waits for every few seconds (none after `wait_seconds`: one line, exit 2), and
    compares the configs (different: one line naming the differing keys, on every worker). It keeps answering until
    every peer has asked, then frees the port for TensorFlow's server.
    """
    import socket
    import threading
    import time

    host, port = hosts[worker.index].rsplit(":", 1)
    payload = json.dumps(config_digest(cfg), sort_keys=True, default=str).encode()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("" if host not in ("localhost", "127.0.0.1") else host, int(port)))
    except OSError as e:
        server.close()
        raise ConfigError(f"port {port} of worker {worker.index} ({hosts[worker.index]} in TF_CONFIG) cannot be "
                          f"used: {e.strerror or e} (another process holds it; stop it or choose another port)") \
            from None
    server.listen(len(hosts))
    server.settimeout(0.5)
    asked = set()
    done = threading.Event()

    def answer():  # serve our config to each peer that asks (a peer says its index first)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    who = int(conn.recv(16).decode().strip() or -1)
                    conn.sendall(payload)
                    asked.add(who)
                except (OSError, ValueError):
                    pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    mine = json.loads(payload)
    t0, last_said = time.monotonic(), 0.0
    try:
        for peer in range(len(hosts)):
            if peer == worker.index:
                continue
            peer_host, peer_port = hosts[peer].rsplit(":", 1)
            while True:
                try:
                    with socket.create_connection((peer_host, int(peer_port)), timeout=5) as c:
                        c.sendall(f"{worker.index}\n".encode()[:16].ljust(16))
                        c.shutdown(socket.SHUT_WR)
                        chunks = []
                        while True:
                            b = c.recv(65536)
                            if not b:
                                break
                            chunks.append(b)
                    theirs = json.loads(b"".join(chunks))
                    break
                except (OSError, ValueError):
                    waited = time.monotonic() - t0
                    if waited > wait_seconds:
                        raise ConfigError(f"worker {worker.index}: worker {peer} ({hosts[peer]}) did not come "
                                          f"within {wait_seconds:g} s; start every worker of TF_CONFIG with the "
                                          "same command (or raise train.worker_wait_seconds)") from None
                    if waited - last_said >= 5:
                        say(f"worker {worker.index}: waiting for worker {peer} ({hosts[peer]}), {waited:.0f} s",
                            flush=True)
                        last_said = waited
                    time.sleep(0.5)
            diff = _differences(mine, theirs)
            if diff:
                show = ", ".join(f"{k} ({mine.get(k)!r} here, {theirs.get(k)!r} there)" for k in diff[:4])
                raise ConfigError(f"worker {worker.index} and worker {peer} were started with different configs: "
                                  f"{show}{' ...' if len(diff) > 4 else ''}; start every worker with the same "
                                  "command")
        # Every peer must also have had our config before the port goes to TensorFlow.
        while not all(p in asked for p in range(len(hosts)) if p != worker.index):
            if time.monotonic() - t0 > wait_seconds:
                raise ConfigError(f"worker {worker.index}: not every worker came within {wait_seconds:g} s")
            time.sleep(0.1)
    finally:
        done.set()
        thread.join(timeout=2)
        server.close()


def make_multiworker_strategy():
    """Creates (once) the `MultiWorkerMirroredStrategy`; must run before TensorFlow executes any op."""
    global _STRATEGY
    if _STRATEGY is None:
        import tensorflow as tf

        from fer_keras.keras_compat import patch_multiworker_fit  # imports Keras: only for multi-worker runs

        import logging

        # "Using CollectiveAllReduceStrategy eagerly has significant overhead": about Keras' own calls, not the user's.
        logging.getLogger("tensorflow").addFilter(lambda r: "eagerly has significant" not in r.getMessage())
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
    if os.environ.get("FER_KERAS_NO_RENDEZVOUS") != "1":
        rendezvous(cfg, worker, json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"],
                   cfg.train.worker_wait_seconds)
    make_multiworker_strategy()
    if not worker.chief:
        cfg.train.runs_dir = os.path.join(cfg.train.runs_dir, WORKERS_DIR)
        cfg.train.name = f"{cfg.train.name}.worker{worker.index}"
        # Never read (the chief's state is broadcast at the start, see follow_the_chief_callback); a worker killed
        # while writing it would leave one that cannot be read.
        shutil.rmtree(os.path.join(cfg.train.runs_dir, cfg.train.name, "backup"), ignore_errors=True)
    print(f"{worker.describe()} | run folder {os.path.join(cfg.train.runs_dir, cfg.train.name)}", flush=True)
    return worker


def finish_worker(worker: Worker, path: str) -> None:
    """A non-chief worker removes its folder once the run has finished (the chief's folder is the run)."""
    if not worker.chief:
        shutil.rmtree(path, ignore_errors=True)
        parent = os.path.dirname(path)
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


def lost_worker_message(path: str, e: BaseException) -> str:
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
            f"{path} resumes from its last finished epoch")


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

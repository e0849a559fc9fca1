"""Multi-worker training (`train.strategy=multiworker`) with real worker processes on loopback ports: two workers
train together (the chief writes the run, the replicas end with equal weights), a killed worker stops the other with
one line, and restarting both resumes from the last finished epoch with one history row per epoch."""

import csv
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tiny import tiny_argv

from fer_keras.distributed import local_cluster, parse_tf_config, shard_options, tf_config
from fer_keras.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = tiny_argv("--epochs", "3", "--batch-size", "8", "--model", "CustomCNN", "--set", "train.verbose=-1",
                 "--set", "train.strategy=multiworker", "--set", "data.demo_per_class=24",
                 "--set", "data.demo_size=32")


HOSTS = ["localhost:1", "localhost:2"]


def _start(tmp_path, cluster, index, name="mw"):
    # Both workers generate the demo data into the same folder at once, as two workers on one host would.
    env = {**os.environ, "TF_CONFIG": cluster[index], "FER_KERAS_DATA": str(tmp_path / "data"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(tmp_path / f"worker{index}.log", "a")
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train_model.py"), "--name", name, "--runs-dir",
                             str(tmp_path / "runs"), *TINY], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _log(tmp_path, index):
    return (tmp_path / f"worker{index}.log").read_text()


def _epochs(run):
    with open(os.path.join(run, "history.csv")) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_tf_config_errors_are_one_line():
    assert parse_tf_config(tf_config(HOSTS, 1)).index == 1
    assert parse_tf_config(tf_config(HOSTS, 0)).chief
    cluster = local_cluster(3)  # free loopback ports, one TF_CONFIG per worker
    assert [parse_tf_config(c).index for c in cluster] == [0, 1, 2]
    hosts = json.loads(cluster[0])["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(json.loads(c)["cluster"]["worker"] == hosts for c in cluster)
    for text, msg in (("{bad", "not valid JSON"), ('{"cluster": {}, "task": {"type": "worker", "index": 0}}',
                                                   "names no worker list"),
                      (tf_config(HOSTS, 2), "index 2 is out of range: the cluster has 2 worker"),
                      ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}', "task must be"),
                      ("", "needs the TF_CONFIG environment variable")):
        with pytest.raises(ConfigError, match=msg):
            parse_tf_config(text)
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    assert shard_options(4, 2).experimental_distribute.auto_shard_policy == policy.FILE
    assert shard_options(1, 2).experimental_distribute.auto_shard_policy == policy.DATA  # fewer files than workers
    assert shard_options().experimental_distribute.auto_shard_policy == policy.DATA


@pytest.mark.slow
def test_bad_tf_config_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "TF_CONFIG": tf_config(HOSTS, 5), "FER_KERAS_DATA": str(tmp_path / "data")}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "train_model.py"), "--name", "x", "--runs-dir",
                        str(tmp_path / "runs"), *TINY], env=env, capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert p.returncode == 2
    err = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "index 5 is out of range" in err[0] and "Traceback" not in p.stderr
    env["TF_CONFIG"] = tf_config(HOSTS, 0)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "train_model.py"), "--runs-dir", str(tmp_path / "runs"),
                        *TINY], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2 and "needs --name" in p.stderr
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_workers_train_together(tmp_path):
    cluster = local_cluster(2)
    workers = [_start(tmp_path, cluster, i) for i in (1, 0)]
    codes = [w.wait(timeout=360) for w in workers]
    assert codes == [0, 0], (_log(tmp_path, 0)[-2000:], _log(tmp_path, 1)[-2000:])
    run = tmp_path / "runs" / "mw"
    for f in ("config.yaml", "model.keras", "history.csv", "runtime.json"):
        assert (run / f).is_file(), f
    assert _epochs(run) == [0, 1, 2]
    assert json.loads((run / "state.json").read_text())["status"] == "finished"
    assert not (tmp_path / "runs" / ".workers").exists()  # worker 1 removed its folder
    logs = [_log(tmp_path, i) for i in (0, 1)]
    assert "worker 0 of 2 (chief" in logs[0] and "worker 1 of 2 |" in logs[1]
    digests = [re.findall(r"final weights digest (\w+)", t) for t in logs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]  # the replicas ended with the same weights
    # Validation numbers are the same on every worker (sharded, then averaged over the workers).
    val = [re.findall(r"val loss ([\d.]+)", t) for t in logs]
    assert len(val[0]) == 3 and val[0] == val[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_worker_stops_the_other_and_a_restart_resumes(tmp_path):
    cluster = local_cluster(2)
    w1, w0 = _start(tmp_path, cluster, 1), _start(tmp_path, cluster, 0)
    run = tmp_path / "runs" / "mw"
    deadline = time.time() + 300
    while time.time() < deadline and not (run.joinpath("history.csv").is_file() and len(_epochs(run)) >= 1):
        assert w0.poll() is None, _log(tmp_path, 0)[-2000:]
        time.sleep(0.2)
    assert _epochs(run) == [0]
    w1.kill()  # mid-epoch 2
    w1.wait()
    assert w0.wait(timeout=240) == 2
    err = [line for line in _log(tmp_path, 0).splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "a worker was lost (worker 1 stopped responding)" in err[0], err
    done = _epochs(run)
    assert done in ([0], [0, 1])  # the epoch under way when the worker died is not written
    # The same two commands again: both resume from the last finished epoch.
    workers = [_start(tmp_path, cluster, i) for i in (1, 0)]
    assert [w.wait(timeout=360) for w in workers] == [0, 0], _log(tmp_path, 0)[-2000:]
    assert _epochs(run) == [0, 1, 2]  # no epoch lost or written twice
    assert "resuming" in _log(tmp_path, 0)
    assert not (tmp_path / "runs" / ".workers").exists()


def _run_worker(tmp_path, cluster, index, *extra, name="mw", timeout=300):
    env = {**os.environ, "TF_CONFIG": cluster[index], "FER_KERAS_DATA": str(tmp_path / "data"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train_model.py"), "--name", name, "--runs-dir",
                             str(tmp_path / "runs"), *TINY, *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.slow
def test_workers_with_different_configs_both_refuse_naming_the_keys(tmp_path):
    cluster = local_cluster(2)
    w0 = _run_worker(tmp_path, cluster, 0, "--set", "train.learning_rate=0.01")
    w1 = _run_worker(tmp_path, cluster, 1, "--set", "train.learning_rate=0.02")
    outs = [w.communicate(timeout=300) for w in (w0, w1)]
    for w, (out, err) in zip((w0, w1), outs):
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert w.returncode == 2 and len(lines) == 1, err[-1500:]
        assert "different configs: train.learning_rate" in lines[0]
        assert "Traceback" not in err and "grpc" not in err.lower()


@pytest.mark.slow
def test_a_busy_port_is_one_line_naming_it(tmp_path):
    import socket

    cluster = local_cluster(2)
    port = int(json.loads(cluster[0])["cluster"]["worker"][0].rsplit(":", 1)[1])
    with socket.socket() as holder:
        holder.bind(("localhost", port))
        holder.listen(1)
        out, err = _run_worker(tmp_path, cluster, 0).communicate(timeout=120)
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and f"port {port} of worker 0" in line[0] and "Traceback" not in err


@pytest.mark.slow
def test_a_worker_whose_peer_never_comes_says_whom_it_waits_for_then_stops(tmp_path):
    cluster = local_cluster(2)
    w = _run_worker(tmp_path, cluster, 1, "--set", "train.worker_wait_seconds=7")
    out, err = w.communicate(timeout=120)
    assert "worker 1: waiting for worker 0" in out
    assert w.returncode == 2 and "worker 0 (localhost:" in err and "did not come within 7 s" in err


@pytest.mark.slow
def test_tf_config_without_the_strategy_is_one_warning(tmp_path, monkeypatch, capsys, demo_root):
    from fer_keras.cli_train import main as train_main
    from tiny import tiny_argv

    monkeypatch.setenv("TF_CONFIG", tf_config(HOSTS, 0))
    train_main(tiny_argv("--data", demo_root["csv"], "--runs-dir", str(tmp_path)))
    err = capsys.readouterr().err
    assert "TF_CONFIG is set but train.strategy is not multiworker" in err and len(err.strip().splitlines()) == 1

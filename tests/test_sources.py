"""Several datasets in one run (`data.sources`): loading and splitting per source, the weighted mix, masked VA
gradients, per-source metrics, starting from another model (`model.init_from`), and the trained-heads record."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from fer_keras.config import Config, SourceConfig, load_config
from fer_keras.data.pipeline import load_data, make_dataset
from fer_keras.errors import ConfigError, ModelError
from fer_keras.losses import ValenceArousalLoss
from fer_keras.metrics import source_scores


def _two_sources(cfg, demo_root, weights=(0.5, 0.5)):
    """Demo faces twice: as a class folder (no VA) and as a CSV (with VA), the way FER2013 + AffectNet mix."""
    cfg.data.labels = "8"
    cfg.data.sources = [SourceConfig(name="novA", path=demo_root["folder"], weight=weights[0], val_fraction=0.25),
                        SourceConfig(name="withva", path=demo_root["csv"], weight=weights[1], val_fraction=0.25,
                                     test_fraction=0.25)]
    return cfg


def test_sources_load_split_and_summarise(tiny_cfg, demo_root):
    cfg = _two_sources(tiny_cfg, demo_root)
    data = load_data(cfg.data)
    assert data.source_names == ["novA", "withva"]
    tables = {s: data.source_tables(s) for s in ("train", "val", "test")}
    n = 12 * 8  # demo_root has 12 faces per class
    assert len(tables["train"]["novA"]) + len(tables["val"]["novA"]) == n
    assert "novA" not in tables["test"]  # test_fraction 0 for that source
    assert len(tables["test"]["withva"]) == pytest.approx(n * 0.25, abs=8)
    # VA only where the source has it
    assert np.isnan(tables["train"]["novA"].valence).all()
    assert np.isfinite(tables["train"]["withva"].valence).all()
    summary = data.summary()
    assert summary["sources"]["withva"]["splits"]["train"]["with_valence_arousal"] == len(tables["train"]["withva"])
    assert summary["sources"]["novA"]["splits"]["train"]["with_valence_arousal"] == 0


def test_heldout_test_fraction_halves_the_datasets_own_val(tmp_path, demo_root):
    import shutil

    root = tmp_path / "fer_like"  # FER2013's image-folder layout: train/ and val/ (PublicTest), no test split
    for cls in sorted(os.listdir(demo_root["folder"])):
        files = sorted(os.listdir(os.path.join(demo_root["folder"], cls)))
        for split, part in (("train", files[:8]), ("val", files[8:])):
            os.makedirs(root / split / cls)
            for f in part:
                shutil.copy(os.path.join(demo_root["folder"], cls, f), root / split / cls / f)
    cfg = Config()
    cfg.data.sources = [SourceConfig(name="fer", path=str(root), heldout_test_fraction=0.5)]
    cfg.data.labels, cfg.data.image_size = "8", 32
    plain = Config()
    plain.data.path, plain.data.labels, plain.data.image_size = str(root), "8", 32
    own = load_data(plain.data)
    assert own.test is None and len(own.val) == 8 * 4
    data = load_data(cfg.data)
    assert len(data.val) == len(data.test) == 8 * 2  # stratified halves of the own val split
    assert np.bincount(data.test.expression, minlength=8).tolist() == [2] * 8
    assert set(data.val.sources).isdisjoint(data.test.sources)
    assert sorted(data.val.sources + data.test.sources) == sorted(own.val.sources)
    assert len(data.train) == len(own.train)


@pytest.mark.slow
def test_mix_draws_sources_by_weight(tiny_cfg, demo_root):
    cfg = _two_sources(tiny_cfg, demo_root, weights=(0.8, 0.2))
    cfg.augment.flip = False
    data = load_data(cfg.data)
    tf.random.set_seed(1)  # op seeds combine with the global seed, which earlier tests may have set
    epoch = tf.Variable(0, dtype=tf.int64)
    ds = make_dataset(data.train, cfg, training=True, seed=3, batch_size=8, epoch=epoch)
    labelled = []
    for e in range(12):  # twelve epochs (each its own draw) of len(train) draws: ~1,700 draws, SD ~0.01
        epoch.assign(e)
        for _, y in ds:
            labelled.extend(np.isfinite(y["valence_arousal"].numpy()[:, 0]).tolist())
    assert np.mean(labelled) == pytest.approx(0.2, abs=0.04)
    # seeded: the same draws again
    a = [y["expression"].numpy().tolist() for _, y in make_dataset(data.train, cfg, training=True, seed=3,
                                                                     batch_size=8)]
    b = [y["expression"].numpy().tolist() for _, y in make_dataset(data.train, cfg, training=True, seed=3,
                                                                     batch_size=8)]
    assert a == b


def test_weighted_sample_draws_plain_samples_in_the_training_proportions(tiny_cfg, demo_root):
    from fer_keras.data.pipeline import weighted_sample

    cfg = _two_sources(tiny_cfg, demo_root, weights=(0.8, 0.2))
    data = load_data(cfg.data)
    drawn = weighted_sample(data.train, cfg.data, 500, seed=0)
    assert len(drawn) == 500 and np.mean(drawn.source_id == 1) == pytest.approx(0.2, abs=0.01)
    again = weighted_sample(data.train, cfg.data, 500, seed=0)
    assert np.array_equal(drawn.raw_index, again.raw_index)  # seeded


def test_va_gradient_is_zero_for_samples_without_va():
    y_true = tf.constant([[0.5, -0.2], [np.nan, np.nan], [-0.3, 0.4], [np.nan, np.nan], [0.1, 0.9]], tf.float32)
    y_pred = tf.Variable(tf.random.stateless_uniform((5, 2), seed=(1, 2), minval=-1, maxval=1))
    for kind in ("mse", "ccc", "both"):
        with tf.GradientTape() as tape:
            loss = ValenceArousalLoss(kind)(y_true, y_pred)
        g = tape.gradient(loss, y_pred).numpy()
        assert np.all(g[[1, 3]] == 0.0), kind
        assert np.all(np.abs(g[[0, 2, 4]]).sum(axis=1) > 0), kind
    with tf.GradientTape() as tape:  # a batch with no VA label at all: no loss, no gradient
        loss = ValenceArousalLoss("both")(tf.fill((3, 2), np.nan), y_pred[:3])
    assert float(loss) == 0.0
    g = tape.gradient(loss, y_pred)
    assert g is None or not np.any(g.numpy())


def test_source_scores_match_sklearn():
    from sklearn.metrics import accuracy_score, recall_score

    rng = np.random.default_rng(0)
    n, k = 200, 8
    y = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    probs[np.arange(n), y] += rng.random(n)  # better than chance
    src = (np.arange(n) % 3 == 0).astype(np.int32)  # source 1: every third sample
    va_t = rng.uniform(-1, 1, (n, 2))
    va_t[src == 0] = np.nan  # source 0 has no VA
    va_p = np.clip(va_t + rng.normal(0, 0.3, (n, 2)), -1, 1)
    s = source_scores(y, probs, va_t, np.nan_to_num(va_p), src, ["fer", "affectnet"])
    for i, name in enumerate(["fer", "affectnet"]):
        m = src == i
        assert s[f"{name}_accuracy"] == pytest.approx(accuracy_score(y[m], probs[m].argmax(1)))
        assert s[f"{name}_uar"] == pytest.approx(recall_score(y[m], probs[m].argmax(1), average="macro"))
    assert "fer_valence_ccc" not in s
    t, p = va_t[src == 1, 0], va_p[src == 1, 0]
    ccc = 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
    assert s["affectnet_valence_ccc"] == pytest.approx(ccc)
    assert s["fer_score"] == s["fer_accuracy"]
    assert s["affectnet_score"] == pytest.approx(np.mean([s["affectnet_accuracy"], s["affectnet_valence_ccc"],
                                                          s["affectnet_arousal_ccc"]]))
    assert s["score"] == pytest.approx((s["fer_score"] + s["affectnet_score"]) / 2)


def test_source_scores_weigh_in_and_out_of_domain_groups():
    y = np.array([0, 1, 0, 1, 0, 1])
    probs = np.eye(2)[[0, 1, 1, 1, 0, 0]]  # source 0: 2/2 right; source 1: 1/2; source 2: 1/2
    src = np.array([0, 0, 1, 1, 2, 2])
    va = np.full((6, 2), np.nan)
    s = source_scores(y, probs, va, np.zeros((6, 2)), src, ["web", "lab", "film"], ["in", "out", "out"], 0.25)
    assert (s["score_in"], s["score_out"]) == (1.0, 0.5)
    assert s["score"] == pytest.approx(0.75 * 1.0 + 0.25 * 0.5)
    only_in = source_scores(y, probs, va, np.zeros((6, 2)), src, ["web", "lab", "film"])
    assert "score_out" not in only_in and only_in["score"] == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_val_only_source_is_never_trained_on(tiny_cfg, demo_root):
    cfg = _two_sources(tiny_cfg, demo_root)
    cfg.data.sources[1].use, cfg.data.sources[1].domain = "val", "out"
    data = load_data(cfg.data)
    tables = {s: data.source_tables(s) for s in ("train", "val", "test")}
    assert "withva" not in tables["train"] and "withva" not in tables["test"]
    assert len(tables["val"]["withva"]) == 12 * 8  # every sample of it
    assert data.source_weights == [1.0, 0.0]


def test_grouped_split_keeps_each_group_in_one_part():
    from fer_keras.data.pipeline import grouped_split

    groups = [f"film{i // 5}" for i in range(100)]  # 20 films of 5 frames
    tr, va = grouped_split(groups, [0.3], seed=3)
    assert len(va) == 30 and len(tr) == 70
    assert not {groups[i] for i in tr} & {groups[i] for i in va}
    assert [a.tolist() for a in grouped_split(groups, [0.3], seed=3)] == [tr.tolist(), va.tolist()]


def test_split_group_pattern_splits_a_folder_by_film(tmp_path):
    from PIL import Image

    for cls in ("happy", "sad"):
        os.makedirs(tmp_path / cls)
        for film in range(6):
            for frame in range(3):
                Image.new("L", (16, 16), 40 * film).save(tmp_path / cls / f"Film_{cls}{film}_{100 + frame}_1.png")
    cfg = Config()
    cfg.data.sources = [SourceConfig(name="films", path=str(tmp_path), val_fraction=0.3, test_fraction=0.0,
                                     split_group_pattern=r"^(.*)_\d+_\d+\.png$")]
    cfg.data.image_size = 16
    data = load_data(cfg.data)
    film = lambda t: {os.path.basename(p).rsplit("_", 2)[0] for p in t.sources}  # noqa: E731
    assert not film(data.train) & film(data.val)
    assert len(data.val) % 3 == 0 and len(data.val) >= 9


@pytest.mark.slow
def test_train_and_evaluate_with_sources(tiny_cfg, demo_root):
    from fer_keras.expression.evaluate import evaluate_run as evaluate
    from fer_keras.expression.train import train

    cfg = _two_sources(tiny_cfg, demo_root)
    cfg.data.sources[0].domain = "out"
    cfg.train.epochs = 2
    cfg.train.seed = 0  # seed 0 once crashed every tf.data shuffle keyed by the epoch variable
    cfg.train.va_loss = "both"
    run = train(cfg)
    import csv

    hist = list(csv.DictReader(open(os.path.join(run, "history.csv"))))
    for key in ("val_score", "val_novA_accuracy", "val_withva_valence_ccc", "val_withva_score", "val_score_in",
                "val_score_out"):
        assert key in hist[0], key
    row = {k: float(v) for k, v in hist[0].items() if k.startswith("val_score")}
    assert row["val_score"] == pytest.approx((row["val_score_in"] + row["val_score_out"]) / 2, abs=1e-5)
    runtime = json.load(open(os.path.join(run, "runtime.json")))
    assert runtime["monitor"] == "val_score"
    heads = json.load(open(os.path.join(run, "labels.json")))["trained_heads"]
    assert heads["valence_arousal"] and heads["train_samples_with_valence_arousal"] > 0
    out, result = evaluate(run=run, bootstrap=20)
    assert set(result["per_source"]) == {"withva"}  # only that source has a test split
    sub = result["per_source"]["withva"]
    assert sub["expression"]["num_samples"] == result["expression"]["num_samples"]
    assert sub["valence_arousal"]["valence"]["ccc"] == pytest.approx(result["valence_arousal"]["valence"]["ccc"])
    assert "## Per source" in open(os.path.join(out, "metrics.md")).read()
    from fer_keras.cli_visualize import main as visualize_main

    visualize_main(["--run", run])  # the report renders a multi-source run (per-source table included)
    report = open(os.path.join(run, "report.html"), encoding="utf-8").read()
    assert "Per source" in report and "withva" in report
    _, val = evaluate(run=run, split="val")
    assert set(val["per_source"]) == {"novA", "withva"}
    n = sum(r["expression"]["num_samples"] for r in val["per_source"].values())
    assert n == val["expression"]["num_samples"]
    assert val["per_source"]["novA"]["valence_arousal"]["valence"] is None  # that source has no VA labels


@pytest.mark.parametrize("sources, message", [
    ([{"path": "x", "colour": 1}], "unknown config key data.sources.colour"),
    ([{"path": "x", "weight": 0}], "weight: must be a positive number"),
    ([{"path": "x", "val_fraction": 1.5}], "val_fraction: must be in [0, 1)"),
    ([{"weight": 1}], "path is missing"),
    ([{"path": "a/x"}, {"path": "b/x"}], "source name 'x' is used twice"),
    ([{"path": "x", "heldout_as_test": True, "heldout_test_fraction": 0.5}], "exclude each other"),
    ("notalist", "expected a mapping"),
    ([{"path": "x", "use": "test"}], "use: 'test' is not one of ['train', 'val']"),
    ([{"path": "x", "domain": "far"}], "domain: 'far' is not one of ['in', 'out']"),
    ([{"path": "x", "split_group_pattern": "(x"}], "split_group_pattern: '(x' is not a regular expression"),
    ([{"path": "x", "split_group_pattern": "x"}], "has no group"),
    ([{"path": "x", "use": "val"}], "at least one must be trained on"),
])
def test_bad_sources_config_is_one_clear_error(tmp_path, sources, message):
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"data": {"sources": sources}}))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(str(p))


def test_path_and_sources_together_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="data.path and data.sources"):
        load_config(None, ["data.path=x", "data.sources=[{path: y}]"])
    with pytest.raises(ConfigError, match="data.balance=oversample cannot be combined with data.sources"):
        load_config(None, ["data.balance=oversample", "data.sources=[{path: y}]"])


def test_init_from_copies_layers_and_classes_by_name(tiny_cfg):
    from fer_keras.models import build_model
    from fer_keras.models.transfer import transfer_weights
    from fer_keras.labels import preset_classes

    m7 = build_model(tiny_cfg.model, 7, (32, 32, 3))
    m8 = build_model(tiny_cfg.model, 8, (32, 32, 3))
    before = m8.get_layer("expression").get_weights()
    rep = transfer_weights(m7, m8, preset_classes("7"), preset_classes("8"))
    assert rep["classes_copied"] == preset_classes("7") and not rep["skipped"]
    k7, b7 = m7.get_layer("expression").get_weights()
    k8, b8 = m8.get_layer("expression").get_weights()
    np.testing.assert_array_equal(k8[:, :7], k7)  # canonical order: the 7 classes come first in the 8 preset
    np.testing.assert_array_equal(k8[:, 7], before[0][:, 7])  # contempt keeps its fresh initialisation
    for name in ("va_hidden", "valence_arousal"):
        for a, b in zip(m7.get_layer(name).get_weights(), m8.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(m7(x)["valence_arousal"], m8(x)["valence_arousal"], atol=1e-6)
    # a 5-class model maps by name too: its 'anger' row lands on the 8 preset's anger
    m5 = build_model(tiny_cfg.model, 5, (32, 32, 3))
    rep5 = transfer_weights(m5, build_model(tiny_cfg.model, 8, (32, 32, 3)), preset_classes("5"),
                            preset_classes("8"))
    assert set(rep5["classes_copied"]) == {"neutral", "happy", "sad", "surprise", "anger"}
    import keras

    unrelated = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="zzz")])
    with pytest.raises(ModelError, match="no layer matches"):
        transfer_weights(unrelated, m8)


@pytest.mark.slow
def test_init_from_in_training_writes_init_json(tiny_cfg, demo_root):
    from fer_keras.expression.train import train

    cfg = tiny_cfg
    cfg.data.path, cfg.data.labels = demo_root["folder"], "7"
    first = train(cfg)
    cfg2 = Config()
    cfg2.data, cfg2.model, cfg2.train = cfg.data, cfg.model, cfg.train
    cfg2.data.labels = "8"
    cfg2.data.path = demo_root["csv"]
    cfg2.model.init_from = first
    second = train(cfg2)
    init = json.load(open(os.path.join(second, "init.json")))
    assert init["init_from"] == os.path.join(first, "model.keras")
    assert "contempt" not in init["classes_copied"] and len(init["classes_copied"]) == 7


@pytest.mark.slow
def test_evaluate_other_data_never_collides(tiny_cfg, demo_root, tmp_path):
    """A multi-source run scored on two folders with the same name writes two eval folders, each with its data."""
    import shutil

    from fer_keras.expression.evaluate import evaluate_run as evaluate
    from fer_keras.expression.train import train

    run = train(_two_sources(tiny_cfg, demo_root))
    outs = []
    for parent in ("A", "B"):
        d = tmp_path / parent / "faces"
        shutil.copytree(demo_root["folder"], d)
        out, result = evaluate(run=run, data=str(d), split="train")
        assert result["info"]["data"] == str(d) and "per_source" not in result  # only that data, not the sources
        outs.append(out)
    assert outs[0] != outs[1] and all(os.path.basename(o).startswith("faces-") for o in outs)
    assert json.load(open(os.path.join(outs[0], "metrics.json")))["info"]["data"].endswith("A/faces")


@pytest.mark.slow
def test_freeze_batchnorm_keeps_statistics(tiny_cfg, demo_root):
    import keras

    from fer_keras.expression.train import all_layers, train

    cfg = tiny_cfg
    cfg.data.path = demo_root["csv"]
    first = train(cfg)
    cfg.model.init_from, cfg.model.freeze_batchnorm = first, True
    second = train(cfg)
    a, b = (keras.saving.load_model(os.path.join(r, "model.keras")) for r in (first, second))
    bns = [l for l in all_layers(a) if isinstance(l, keras.layers.BatchNormalization)]
    assert bns
    for layer in bns:
        for w0, w1 in zip(layer.get_weights(), b.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(w0, w1)  # gamma, beta, moving mean and variance all unchanged
    k0, k1 = a.get_layer("expression").get_weights()[0], b.get_layer("expression").get_weights()[0]
    assert not np.array_equal(k0, k1)  # the rest still trains


@pytest.mark.slow
def test_distillation_targets_loss_and_run(tiny_cfg, demo_root):
    """Teacher probabilities join the expression target of the sources they teach: the loss is the cross-entropy
    with `(1 - w) * label + w * teacher`, plain where a sample has no teacher, and a run records what was taught."""
    from fer_keras.data.pipeline import expression_targets
    from fer_keras.losses import ExpressionLoss
    from fer_keras.expression.train import train

    pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], np.float32)
    teacher = np.array([0.2, 0.5, 0.3], np.float32)
    packed = np.array([[0, *teacher], [1, -1, -1, -1]], np.float32)
    loss = ExpressionLoss(3, distill_weight=0.25)
    per_sample = loss.call(tf.constant(packed), tf.constant(pred)).numpy()
    target0 = 0.75 * np.eye(3)[0] + 0.25 * teacher
    np.testing.assert_allclose(per_sample, [-(target0 * np.log(pred[0])).sum(), -np.log(pred[1, 1])], rtol=1e-5)
    plain = loss.call(tf.constant([0, 1]), tf.constant(pred)).numpy()
    np.testing.assert_allclose(plain, [-np.log(pred[0, 0]), -np.log(pred[1, 1])], rtol=1e-5)

    cfg = tiny_cfg
    cfg.data.path, cfg.data.labels = demo_root["folder"], "7"
    teacher_run = train(cfg)
    cfg2 = _two_sources(Config(), demo_root)
    cfg2.data.image_size, cfg2.model, cfg2.train = cfg.data.image_size, cfg.model, cfg.train
    cfg2.train.distill_from, cfg2.train.distill_tta, cfg2.train.distill_sources = teacher_run, "flip", ["novA"]
    cfg2.train.name = "student"
    data = load_data(cfg2.data)
    run = train(cfg2, data)
    info = json.load(open(os.path.join(run, "distill.json")))
    novA = data.train.source_id == data.source_names.index("novA")
    not_contempt = data.train.expression != data.class_names.index("contempt")
    assert info["samples_taught"] == int((novA & not_contempt).sum()) and info["samples"] == len(data.train)
    soft = data.train.soft
    assert np.isnan(soft[~novA]).all() and np.allclose(soft[novA & not_contempt].sum(1), 1.0, atol=1e-4)
    assert (soft[novA & not_contempt][:, data.class_names.index("contempt")] == 0).all()  # a 7-class teacher
    targets = expression_targets(data.train)
    assert targets.shape == (len(data.train), 9) and (targets[~novA, 1:] == -1).all()


def test_load_all_keeps_every_sample_and_its_source(tiny_cfg, demo_root):
    from fer_keras.data.pipeline import load_all

    cfg = _two_sources(tiny_cfg, demo_root)
    split = load_data(cfg.data)
    every = load_all(cfg.data)
    n = sum(len(t) for t in (split.train, split.val, split.test) if t is not None)
    assert len(every.train) == 0 and every.val is None and len(every.test) == n
    assert {k: len(v) for k, v in every.source_tables("test").items()} == {
        s: sum(len(split.source_tables(p).get(s, [])) for p in ("train", "val", "test")) for s in split.source_names}


@pytest.mark.slow
def test_va_teachers_label_the_samples_without_va(tiny_cfg, demo_root, tmp_path):
    """`train.va_teachers`: the samples without valence/arousal get the teachers' mean prediction (a teacher with
    another input size and channel count included), labelled samples keep theirs, and va_teachers.json says so;
    a teacher whose VA head was never trained is refused by name."""
    from fer_keras.models import build_model
    from fer_keras.expression.train import train

    teachers = []
    for i, shape in enumerate([(24, 24, 1), (32, 32, 1)]):
        m = build_model(tiny_cfg.model, 8, shape)
        path = str(tmp_path / f"teacher{i}.keras")
        m.save(path)
        teachers.append(path)
    cfg = _two_sources(tiny_cfg, demo_root)
    cfg.train.va_teachers, cfg.train.va_teacher_tta, cfg.train.name = teachers, "none", "student"
    data = load_data(cfg.data)
    had_va = np.isfinite(data.train.valence)
    before = data.train.va.copy()
    run = train(cfg, data)
    info = json.load(open(os.path.join(run, "va_teachers.json")))
    assert info["samples_taught"] == int((~had_va).sum()) > 0 and info["samples"] == len(data.train)
    assert set(info["ccc_on_labelled_training_samples"]) == set(teachers) | {"mean"}
    assert np.isfinite(data.train.va).all() and (np.abs(data.train.va) <= 1).all()
    np.testing.assert_array_equal(data.train.va[had_va], before[had_va])

    with open(os.path.splitext(teachers[0])[0] + ".json", "w") as f:
        json.dump({"trained_heads": {"expression": True, "valence_arousal": False}}, f)
    cfg.train.name = "student2"
    with pytest.raises(ConfigError, match="teacher0.keras has no trained valence_arousal output"):
        train(cfg, load_data(cfg.data))


def test_a_teacher_that_is_no_expression_model_is_one_config_error(tmp_path):
    """A detector, a model without a valence_arousal output or a missing file as a teacher: one ConfigError naming
    the key, never a KeyError or TypeError from inside Keras."""
    import keras

    from fer_keras.expression.train import load_teacher

    inp = keras.Input((16, 16, 3))
    det = keras.Model(inp, {"boxes": keras.layers.Dense(4, name="boxes")(keras.layers.Flatten()(inp))})
    det.save(str(tmp_path / "det.keras"))
    with pytest.raises(ConfigError, match="train.distill_from: .*det.keras: not a fer_keras model"):
        load_teacher(str(tmp_path / "det.keras"), "train.distill_from")
    with pytest.raises(ConfigError, match="train.va_teachers: model .*nothing.keras.*: no such file"):
        load_teacher(str(tmp_path / "nothing.keras"), "train.va_teachers")
    info, model = load_teacher("compact", "train.distill_from")  # a shipped name works
    assert info.class_names and "expression" in [layer.name for layer in model.layers]


def test_va_teacher_keys_load_and_check():
    """configs/default_va.yaml names its VA teachers; a view set that is no TTA is a one-line config error."""
    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    cfg = load_config(os.path.join(root, "default_va.yaml"))
    assert cfg.train.va_teachers == ["runs/default-v3-bn", "compact"] and cfg.train.va_teacher_tta == "flip"
    with pytest.raises(ConfigError, match="train.va_teacher_tta"):
        load_config(os.path.join(root, "default_va.yaml"), overrides=["train.va_teacher_tta=sideways"])

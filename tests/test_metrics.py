"""Every metric against scikit-learn / SciPy (or a hand computation) on random data and edge cases."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn import metrics as skm

from fer_keras import metrics as M

rng = np.random.default_rng(0)


def _data(n=200, k=5, missing_pred=None):
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2 * np.eye(k)[y] * rng.random((n, 1))
    if missing_pred is not None:
        logits[:, missing_pred] = -10  # a class never predicted
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


@pytest.mark.parametrize("missing_pred", [None, 2])
def test_expression_metrics_match_sklearn(missing_pred):
    k = 5
    y, p = _data(k=k, missing_pred=missing_pred)
    names = [f"c{i}" for i in range(k)]
    m = M.expression_metrics(y, p, names)
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["uar"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert m["uar"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted", zero_division=0))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert m["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, p, k=2, labels=range(k)))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(k)).tolist()
    onehot = np.eye(k)[y]
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(onehot, p, average="macro"))
    assert m["ap_macro"] == pytest.approx(skm.average_precision_score(onehot, p, average="macro"))
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    for c, name in enumerate(names):
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(
            (prec[c], rec[c], f1[c], sup[c]))
        assert pc["roc_auc"] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]))
        assert pc["ap"] == pytest.approx(skm.average_precision_score(y == c, p[:, c]))


def test_class_absent_from_test_set_is_reported_not_dropped():
    y, p = _data(k=4)
    y[y == 3] = 0
    m = M.expression_metrics(y, p, ["a", "b", "c", "d"])
    assert m["classes_absent"] == ["d"]
    present = [0, 1, 2]
    assert m["uar"] == pytest.approx(skm.recall_score(y, p.argmax(1), labels=present, average="macro",
                                                      zero_division=0))
    assert m["per_class"]["d"]["roc_auc"] is None and m["per_class"]["d"]["support"] == 0


def test_constant_predictions():
    y = rng.integers(0, 3, 50)
    p = np.tile([0.2, 0.5, 0.3], (50, 1))
    m = M.expression_metrics(y, p, ["a", "b", "c"])
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y, p.argmax(1)))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p.argmax(1)))  # 0: undefined
    assert m["roc_auc_macro"] == pytest.approx(0.5)
    assert m["uar"] == pytest.approx(1 / 3)


def test_ties_in_scores_auc():
    y = np.array([0, 1, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.9, 0.1, 0.5])
    assert M.roc_auc_binary(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    assert M.average_precision_binary(y, s) == pytest.approx(skm.average_precision_score(y, s))


def _ccc_reference(t, p):
    # Lin (1989) with population variances, written independently of fer_keras.metrics.
    cov = np.cov(t, p, bias=True)[0, 1]
    return 2 * cov / (np.var(t) + np.var(p) + (np.mean(t) - np.mean(p)) ** 2)


def test_va_metrics_against_references():
    t = rng.uniform(-1, 1, (300, 2))
    p = np.clip(t * 0.7 + rng.normal(0, 0.3, t.shape), -1, 1)
    t_missing = t.copy()
    t_missing[:50] = np.nan
    m = M.va_metrics(t_missing, p)
    assert m["num_labelled"] == 250 and m["num_unlabelled"] == 50
    for j, name in enumerate(("valence", "arousal")):
        tt, pp = t[50:, j], p[50:, j]
        assert m[name]["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(tt, pp)))
        assert m[name]["pearson"] == pytest.approx(pearsonr(tt, pp)[0])
        assert m[name]["ccc"] == pytest.approx(_ccc_reference(tt, pp))
        assert m[name]["sagr"] == pytest.approx(np.mean(np.sign(tt) == np.sign(pp)))


def test_ccc_zero_variance_is_finite():
    assert M.ccc(np.zeros(10), np.zeros(10)) == 0.0
    assert np.isfinite(M.ccc(np.ones(10) * 0.3, rng.uniform(-1, 1, 10)))
    assert M.pearson(np.zeros(10), rng.uniform(size=10)) == 0.0
    assert M.ccc(np.array([0.1, 0.5, -0.2]), np.array([0.1, 0.5, -0.2])) == pytest.approx(1.0)


def test_va_metrics_without_labels():
    m = M.va_metrics(np.full((5, 2), np.nan), np.zeros((5, 2)))
    assert m["valence"] is None and m["num_unlabelled"] == 5


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    y, p = _data(n=300)
    pred = p.argmax(1)
    acc = lambda a, b: float(np.mean(a == b))  # noqa: E731
    ci = M.bootstrap_ci(acc, [y, pred], n=300, seed=1)
    assert ci[0] < acc(y, pred) < ci[1]
    assert ci == M.bootstrap_ci(acc, [y, pred], n=300, seed=1)
    assert M.bootstrap_ci(acc, [y, pred], n=0) is None


def test_the_summary_metric_table_is_what_every_table_reads(monkeypatch, tmp_path):
    """A metric added as one row shows up in metrics.json, metrics.md, its bootstrap CI, the comparison table and
    the HTML report, with nothing else edited."""
    from fer_keras import report
    from fer_keras.expression import evaluate as evaluation

    monkeypatch.setattr(M, "SUMMARY_METRICS", dict(M.SUMMARY_METRICS))
    M.summary_metric("error_rate", "error rate", percent=True, higher_is_better=False, ci=True, compare=True,
                     headline=True)(lambda y, p: float(np.mean(y != p.argmax(1))))
    y, p = _data(k=4)
    va = rng.uniform(-1, 1, (len(y), 2))
    result = evaluation.compute_metrics(y, p, va, va * 0.5, ["a", "b", "c", "d"], bootstrap=50)
    result["info"] = {"model": "m.keras", "data": "d", "split": "test", "preset": "4",
                      "class_names": ["a", "b", "c", "d"]}
    assert result["expression"]["error_rate"] == pytest.approx(1 - result["expression"]["accuracy"])
    lo, hi = result["bootstrap_95ci"]["error_rate"]
    assert lo <= result["expression"]["error_rate"] <= hi
    assert "| error rate % |" in evaluation.metrics_markdown(result)
    md, csv_text = evaluation.comparison_table([{"run": "r", "result": result}])
    assert "error_rate" in md.splitlines()[0] and "error_rate" in csv_text.splitlines()[0]
    assert "error rate" in report.headline(result, "t") and "error rate" in str(report.metric_tables(result))

"""A model's calibrated output prior: the one place where stored class probabilities are adjusted after the network.

A model trained on FER+ majority votes learns FER+'s class frequencies (neutral 0.33, happy 0.26 of its mean
prediction on val faces), and carries them to faces of other distributions: posed lab faces that have no neutral
frame at all get called neutral. Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR
2021) removes a share `tau` of a prior from the log-probabilities:

    p'(c) ∝ p(c) · prior(c) ** -tau

`tau = 0` is the raw model, `tau = 1` divides the prior out. `class_bias` generalises it to one free shift per class
(p'(c) ∝ p(c) · exp(bias(c))), searched on val data. Either is chosen on val data (by
`benchmarks/choose_calibration.py`) and stored in the model's metadata (`"calibration"` in a run's labels.json or in
the sidecar `.json` beside a `.keras` file) as a per-class log-space `bias`, with how it was chosen. predict (Keras
and LiteRT), evaluate and the API all call `Calibration.apply` on the view-averaged probabilities, before any
mapping to another label preset; `--calibration none` (`calibration="none"`) turns it off.

The methods are one registry, `CALIBRATION_METHODS`: the names a sidecar may store. `CALIBRATION_MODES` are the
values the CLIs and the API take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from fer_keras.errors import ConfigError, choice_error

# method name -> what it does (the sidecar's "method"; --help and errors list these)
CALIBRATION_METHODS: Dict[str, str] = {
    "logit_adjustment": "p ∝ p · prior ** -tau: a share tau of a class prior removed from the log-probabilities",
    "class_bias": "p ∝ p · exp(bias): one log-probability shift per class, searched on val data",
}
# What --calibration / calibration= take: the model's stored calibration (auto) or the raw network outputs (none).
CALIBRATION_MODES = ("auto", "none")


@dataclass
class Calibration:
    """A stored calibration: per-class log-space `bias` (in the model's class order) added to the log-probabilities.

    `prior` and `tau` record where the bias came from (`bias = -tau * log(prior)`); `chosen_on` says on which data.
    """

    method: str
    class_names: List[str]
    bias: List[float]
    prior: Optional[List[float]] = None
    tau: Optional[float] = None
    chosen_on: str = ""
    extra: dict = field(default_factory=dict)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Adjusted probabilities of (N, K) `probs` in the model's class order: `probs * exp(bias)`, renormalised
        (computed in float64, returned in the input's float type)."""
        out = np.asarray(probs, np.float64) * np.exp(np.asarray(self.bias, np.float64))[None, :]
        out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-300)
        return out.astype(np.result_type(np.asarray(probs).dtype, np.float32))

    def to_dict(self) -> dict:
        d = {"method": self.method, "class_names": list(self.class_names),
             "bias": [round(float(b), 6) for b in self.bias]}
        if self.prior is not None:
            d["prior"] = [round(float(p), 6) for p in self.prior]
        if self.tau is not None:
            d["tau"] = float(self.tau)
        if self.chosen_on:
            d["chosen_on"] = self.chosen_on
        return {**d, **self.extra}

    def describe(self) -> str:
        """One line for reports and model cards."""
        shifts = ", ".join(f"{n} {b:+.2f}" for n, b in zip(self.class_names, self.bias))
        head = f"{self.method}" + (f", tau {self.tau:g}" if self.tau is not None else "")
        return f"{head} (log-probability shifts: {shifts})"


def logit_adjustment(prior: Sequence[float], tau: float, class_names: Sequence[str], chosen_on: str = "",
                     **extra) -> Calibration:
    """The `logit_adjustment` calibration of a class `prior` (e.g. the model's mean prediction on val faces)."""
    prior = np.asarray(prior, np.float64)
    if prior.ndim != 1 or len(prior) != len(class_names) or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
        raise ConfigError(f"logit adjustment: the prior must be {len(class_names)} positive numbers, got "
                          f"{np.asarray(prior).tolist()}")
    prior = prior / prior.sum()
    return Calibration("logit_adjustment", list(class_names), (-float(tau) * np.log(prior)).tolist(),
                       prior.tolist(), float(tau), chosen_on, dict(extra))


def class_bias(bias: Sequence[float], class_names: Sequence[str], chosen_on: str = "", **extra) -> Calibration:
    """The `class_bias` calibration: per-class log-probability shifts chosen directly (e.g. by coordinate search on
    val data, `benchmarks/choose_calibration.py --method class_bias`)."""
    bias = np.asarray(bias, np.float64)
    if bias.shape != (len(class_names),) or not np.all(np.isfinite(bias)):
        raise ConfigError(f"class bias: expected {len(class_names)} finite numbers, got {bias.tolist()}")
    return Calibration("class_bias", list(class_names), bias.tolist(), chosen_on=chosen_on, extra=dict(extra))


def parse_calibration(meta: Optional[dict], class_names: Optional[Sequence[str]], where: str
                      ) -> Optional[Calibration]:
    """The `"calibration"` object of a model's metadata, checked against its class names; None when absent.

    Raises:
        ConfigError naming `where` (the model) and what is wrong: an unknown method, a bias of the wrong length or
        not finite, class names that differ from the model's.
    """
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: calibration in its metadata is not a JSON object")
    method = meta.get("method")
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"{where}: calibration method {method!r} is unknown (valid: "
                          f"{', '.join(CALIBRATION_METHODS)})")
    names = meta.get("class_names")
    bias = meta.get("bias")
    if not isinstance(bias, list) or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bias) \
            or not np.all(np.isfinite(np.asarray(bias, np.float64))):
        raise ConfigError(f"{where}: calibration bias is not a list of finite numbers")
    if not isinstance(names, list) or len(names) != len(bias):
        raise ConfigError(f"{where}: calibration needs class_names, one per bias value")
    if class_names is not None and list(names) != list(class_names):
        raise ConfigError(f"{where}: calibration class_names {names} differ from the model's {list(class_names)}")
    known = {"method", "class_names", "bias", "prior", "tau", "chosen_on"}
    return Calibration(method, list(names), [float(b) for b in bias], meta.get("prior"), meta.get("tau"),
                       str(meta.get("chosen_on", "")), {k: v for k, v in meta.items() if k not in known})


def check_mode(mode: str) -> str:
    """`mode` if it is one of `CALIBRATION_MODES`, else a ConfigError naming the valid values."""
    if mode not in CALIBRATION_MODES:
        raise choice_error("calibration", mode, CALIBRATION_MODES)
    return mode


def resolve(stored: Optional[Calibration], mode: str) -> Optional[Calibration]:
    """The calibration to apply: the stored one for `auto`, nothing for `none`."""
    return stored if check_mode(mode) == "auto" else None


def apply(probs: np.ndarray, calibration: Optional[Calibration]) -> np.ndarray:
    """`calibration.apply(probs)`, or `probs` unchanged when there is none."""
    return probs if calibration is None else calibration.apply(probs)

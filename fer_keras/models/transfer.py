"""Starting a model from another model's weights (fine-tuning, growing a preset), matched by layer name."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import keras

from fer_keras.errors import ModelError


def transfer_weights(source: keras.Model, target: keras.Model, source_classes: Optional[Sequence[str]] = None,
                     target_classes: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    """Copies weights from `source` into `target` layer by layer, by name.

    A layer is copied when both models have it and every weight has the same shape. The `expression` layer is
    copied class by class when the class lists differ: a target class the source also predicts gets the source's
    kernel column and bias; a new class (e.g. contempt when a 7-class model starts an 8-class one) keeps its fresh
    initialisation.

    Returns:
        `{"copied": [...], "classes_copied": [...], "skipped": ["layer: reason", ...]}`.

    Raises:
        ModelError: when no layer at all matches (almost surely the wrong file).
    """
    report = {"copied": [], "classes_copied": [], "skipped": []}
    src_layers = {l.name: l for l in source.layers}
    for layer in target.layers:
        src = src_layers.get(layer.name)
        if src is None or not layer.weights:
            if src is None and layer.weights:
                report["skipped"].append(f"{layer.name}: not in the source model")
            continue
        sw, tw = src.get_weights(), layer.get_weights()
        if len(sw) == len(tw) and all(a.shape == b.shape for a, b in zip(sw, tw)) and (
                layer.name != "expression" or source_classes is None or list(source_classes) == list(
                target_classes)):
            layer.set_weights(sw)
            report["copied"].append(layer.name)
        elif layer.name == "expression" and source_classes is not None and target_classes is not None \
                and len(sw) == 2 and sw[0].shape[0] == tw[0].shape[0]:
            kernel, bias = tw[0].copy(), tw[1].copy()
            for j, name in enumerate(target_classes):
                if name in source_classes:
                    i = list(source_classes).index(name)
                    kernel[:, j], bias[j] = sw[0][:, i], sw[1][i]
                    report["classes_copied"].append(name)
            layer.set_weights([kernel, bias])
            report["copied"].append(layer.name)
        else:
            report["skipped"].append(f"{layer.name}: shapes differ "
                                     f"({[a.shape for a in sw]} vs {[b.shape for b in tw]})")
    if not report["copied"]:
        raise ModelError(f"{source.name}: no layer matches the model being built by name and shape; "
                         "model.init_from must be a model of the same architecture")
    return report


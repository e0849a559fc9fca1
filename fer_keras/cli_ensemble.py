"""Build an ensemble of trained models into one `.keras` file with a `.json` sidecar (`fer_keras.models.ensemble`).

    python -m fer_keras.cli_ensemble --members default compact --expression-weights 0.9 0.1 --va-weights 0.2 0.8 \\
        --tta flip --out runs/my-ensemble/model.keras
    python -m fer_keras.export --model runs/my-ensemble/model.keras --quantize int8 \\
        --calibration-config configs/default.yaml --out runs/my-ensemble/model.tflite

Choose the weights on val splits first (`benchmarks/choose_ensemble.py`). The output is never overwritten.
"""

from __future__ import annotations

import os

from fer_keras.cli_common import CliParser
from fer_keras.errors import ConfigError, cli_main
from fer_keras.io_utils import atomic_path
from fer_keras.model_info import (check_expression_model, load_keras_model, read_model_info, sidecar_path,
                                  write_sidecar)
from fer_keras.pretrained import resolve_model
from fer_keras.tta import TTA


@cli_main
def main(argv=None):
    p = CliParser(prog="python -m fer_keras.cli_ensemble", description=__doc__.splitlines()[0])
    p.add_argument("--members", nargs="+", required=True, help="shipped names, .keras files or run folders")
    p.add_argument("--expression-weights", nargs="+", type=float)
    p.add_argument("--va-weights", nargs="+", type=float)
    p.add_argument("--input-size", type=int, help="input height and width (default: the first member's)")
    p.add_argument("--tta", choices=list(TTA), help="the ensemble's default test-time views (its .json `tta`)")
    p.add_argument("--out", required=True, help="the ensemble's .keras file (a .json sidecar is written beside it)")
    a = p.parse_args(argv)
    # imports Keras (TensorFlow): after the arguments, so --help and argument errors show none of its start-up lines
    from fer_keras.models.ensemble import build_ensemble
    if not a.out.endswith(".keras"):
        raise ConfigError(f"--out {a.out}: must end in .keras")
    side = sidecar_path(a.out)
    for path in (a.out, side):
        if os.path.exists(path):
            raise ConfigError(f"--out {a.out}: {path} exists; an ensemble never overwrites a file")
    if a.input_size is not None and not 8 <= a.input_size <= 4096:
        raise ConfigError(f"--input-size {a.input_size}: out of range (expected an image side in pixels, 8-4096)")
    infos = [read_model_info(resolve_model(m)) for m in a.members]
    names = [i.class_names for i in infos]
    if names[0] is None or any(n != names[0] for n in names):
        raise ConfigError(f"ensemble members have different classes: {names}")
    models = [load_keras_model(i.model_file) for i in infos]
    for m, info, name in zip(models, infos, a.members):  # each member agrees with its own metadata
        check_expression_model(m, name, info.class_names)
    shape = None
    if a.input_size:
        shape = (a.input_size, a.input_size, int(models[0].input_shape[-1]))
    ens = build_ensemble(models, shape, a.expression_weights, a.va_weights)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with atomic_path(a.out) as tmp:
        ens.save(tmp)
    vw = ens.get_layer("valence_arousal").member_weights
    heads = {"expression": True,
             "valence_arousal": all(i.va_trained for i, w in zip(infos, vw) if w > 0)}
    extra = {"tta": a.tta} if a.tta else {}
    sidecar = write_sidecar(a.out, names[0], heads, **extra, members=list(a.members),
                            expression_weights=ens.get_layer("expression").member_weights, va_weights=vw)
    print(f"ensemble of {len(models)} members: {a.out} (+ {sidecar})")
    return a.out


if __name__ == "__main__":
    main()

"""`python -m fer_keras.export` / `fer-export`: a run's export formats, or one model file to TFLite or float16 .keras."""

from __future__ import annotations

import os

from fer_keras.cli_common import CliParser
from fer_keras.errors import cli_main
from fer_keras.export import export_run
from fer_keras.expression.export import TFLITE_FILES, export_model_file
from fer_keras.pretrained import resolve_model
from fer_keras.tasks import TASKS

DESCRIPTION = "Export a trained run: SavedModel, .keras, TFLite (float32, float16, dynamic-range and int8)."


@cli_main
def main(argv=None):
    p = CliParser(prog="python -m fer_keras.export", description=DESCRIPTION)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a finished run: its formats are written into <run>/export/")
    src.add_argument("--model", help="a .keras model file (e.g. an ensemble): one file, --out (.tflite, or .keras "
                                     "with float16 weights)")
    p.add_argument("--format", default="all", choices=sorted({f for t in TASKS.names() for f in TASKS.get(t).export_formats}) + ["all"],
                   help="all: every format of the run's kind (detection runs: savedmodel, keras, compact)")
    p.add_argument("--quantize", default="float32", choices=list(TFLITE_FILES),
                   help="--model: the TFLite weights (int8 needs --calibration-config)")
    p.add_argument("--calibration-config", help="--model --quantize int8: the config whose training images "
                                                "calibrate the activation ranges")
    p.add_argument("--out", help="--model: the .tflite file to write, or a .keras file with float16 weights "
                                 "(--quantize float16); never overwritten")
    a = p.parse_args(argv)
    if a.model:
        return {"out": export_model_file(resolve_model(a.model), a.out, a.quantize, a.calibration_config)}
    written = export_run(a.run, None if a.format == "all" else [a.format])
    for k, v in written.items():
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(v) for f in fs) \
            if os.path.isdir(v) else os.path.getsize(v)
        print(f"{k}: {v} ({size / 1e6:.1f} MB)")
    return written


if __name__ == "__main__":
    main()

"""`python -m fer_keras.data.counts`: class counts of a dataset under every label preset, per split (and fold)."""

from __future__ import annotations

import io
import os

from fer_keras.cli_common import CliParser
from fer_keras.data.counts import dataset_counts, markdown
from fer_keras.errors import cli_main
from fer_keras.io_utils import atomic_write_text

@cli_main
def main(argv=None):
    p = CliParser(prog="python -m fer_keras.data.counts", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--format", default="auto")
    p.add_argument("--fold", type=int)
    p.add_argument("--out", default="counts")
    a = p.parse_args(argv)
    result = dataset_counts(a.data, a.format, a.fold)
    md, buf = [], io.StringIO()
    buf.write("fold,preset,split,class,count\n")
    for f, rows in result.items():
        title = f"## Fold {f}" if f else "## Dataset split"
        md += [title, "", markdown(rows)]
        for r in rows:
            buf.write(f"{f},{r['preset']},{r['split']},{r['class']},{r['count']}\n")
    text = "\n".join(md)
    print(text)
    os.makedirs(a.out, exist_ok=True)
    atomic_write_text(os.path.join(a.out, "class_counts.md"), text)
    atomic_write_text(os.path.join(a.out, "class_counts.csv"), buf.getvalue())
    return result


if __name__ == "__main__":
    main()

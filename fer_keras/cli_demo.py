"""`python -m fer_keras.data.demo`: writes the built-in synthetic demo dataset in any supported layout."""

from __future__ import annotations

from fer_keras.cli_common import CliParser
from fer_keras.data.demo import write_demo, write_demo_clips
from fer_keras.errors import cli_main

@cli_main
def main(argv=None):
    p = CliParser(prog="python -m fer_keras.data.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/demo")
    p.add_argument("--format", default="csv", choices=["folder", "csv", "npy", "fer2013", "affectnet", "all",
                                                      "dfew", "clips"],
                   help="dfew / clips: video clips (each a face whose expression grows over the frames) in the "
                        "DFEW layout or <class>/<clip>/ folders")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (dfew / clips)")
    p.add_argument("--per-class", type=int, default=160)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.format in ("dfew", "clips"):
        print(write_demo_clips(a.out, a.format, a.per_class, a.size, a.frames, a.seed))
        return
    fmts = ["folder", "csv", "npy", "fer2013", "affectnet"] if a.format == "all" else [a.format]
    for f in fmts:
        print(write_demo(a.out, f, a.per_class, a.size, a.seed))


if __name__ == "__main__":
    main()

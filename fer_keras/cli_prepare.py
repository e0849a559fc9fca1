"""`python -m fer_keras.data.prepare`: converts a dataset into sharded TFRecords of face crops (resumable)."""

from __future__ import annotations

from typing import Optional

from fer_keras.cli_common import CliParser
from fer_keras.config import load_config
from fer_keras.data import shards as S
from fer_keras.data.prepare import prepare
from fer_keras.errors import cli_main

def build_parser() -> CliParser:
    p = CliParser(prog="python -m fer_keras.data.prepare",
                                description="Convert a dataset into sharded TFRecords of face crops (resumable).")
    p.add_argument("--out", required=True, help="output folder (a new one, or one to resume)")
    p.add_argument("--config", help="YAML config whose data section says what to read (configs/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--data", help="dataset path (default: the config's data.path, or the built-in demo data)")
    p.add_argument("--format", help="auto | folder | csv | npy | fer2013 | affectnet")
    p.add_argument("--labels", help="label preset: 8 | 7 | 5 | 4 | 2")
    p.add_argument("--image-size", type=int, help="crop size in pixels")
    p.add_argument("--channels", type=int, choices=[1, 3])
    p.add_argument("--shard-size", type=int, default=2048, help="records per shard (default 2048)")
    p.add_argument("--encoding", choices=list(S.ENCODINGS), default="raw")
    p.add_argument("--workers", type=int, default=4, help="decoding threads")
    p.add_argument("--skip-bad", action="store_true", default=None, help="skip bad images and count them")
    return p


@cli_main
def main(argv: Optional[list] = None) -> dict:
    args = build_parser().parse_args(argv)

    flags = {"data.path": args.data, "data.format": args.format, "data.labels": args.labels,
             "data.image_size": args.image_size, "data.channels": args.channels, "data.skip_bad": args.skip_bad}
    cfg = load_config(args.config, args.set, flags)
    return prepare(cfg, args.out, args.shard_size, args.encoding, args.workers)


if __name__ == "__main__":
    main()

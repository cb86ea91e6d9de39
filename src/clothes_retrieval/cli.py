"""Command-line interface: ``clothes-retrieval <command>``.

Commands:
  sample-data   write the synthetic DeepFashion2-layout sample (and `dvc add` it)
  items         read a DeepFashion2-layout dataset into the item and quarantine tables
  check-config  validate a pipeline profile and print it fully resolved
  real-benchmark  the real street-to-shop benchmark (street photos -> product photos)

The whole pipeline runs through Dagster (`make run`); these commands call single stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from clothes_retrieval.config import ConfigError, load_yaml, validate_config

logger = logging.getLogger("clothes_retrieval.cli")


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from clothes_retrieval.data.sample import SampleDataConfig, generate_sample_data
    from clothes_retrieval.versioning import dvc_add

    data = load_yaml(args.config) if args.config else {}
    if args.config and "sample" in data and isinstance(data["sample"], dict):
        data = data["sample"]  # a pipeline profile: take its sample section
    if args.seed is not None:
        data = {**data, "seed": args.seed}
    config = validate_config(SampleDataConfig, data, source=str(args.config or "<defaults>"))
    summary = generate_sample_data(config, args.out)
    print(
        json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in vars(summary).items()}, indent=2
        )
    )
    if args.dvc_track is not None:
        md5 = dvc_add(args.dvc_track, repo_root=args.dvc_repo)
        print(f"dvc: {args.dvc_track} -> {md5}")
    return 0


def _cmd_items(args: argparse.Namespace) -> int:
    from clothes_retrieval.data.deepfashion2 import (
        ReaderConfig,
        read_deepfashion2,
        write_item_tables,
    )

    config = ReaderConfig(splits=tuple(args.splits))
    result = read_deepfashion2(args.root, config)
    paths = write_item_tables(result, args.out)
    print(f"{len(result.items)} items, {len(result.quarantine)} quarantined -> {paths['items']}")
    if len(result.quarantine):
        print(
            result.quarantine[["split", "image_id", "item_index", "reason", "message"]].to_string(
                index=False
            )
        )
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from clothes_retrieval.profile import load_profile

    profile = load_profile(args.profile)
    print(json.dumps(profile.dump(), indent=2, default=str))
    return 0


def _cmd_real_benchmark(args: argparse.Namespace) -> int:
    from clothes_retrieval.real_benchmark import load_benchmark_config, run_real_benchmark

    overrides: dict = {
        "street_train": str(args.street_train) if args.street_train else None,
        "street_queries": str(args.street_queries) if args.street_queries else None,
        "products": str(args.products) if args.products else None,
        # with --tuning, --out names the tuning run's folder
        "tuning_output_dir" if args.tuning else "output_dir": str(args.out) if args.out else None,
    }
    config = load_benchmark_config(args.config, overrides)
    if args.tuning:
        config = config.for_tuning()
    missing = config.missing_roots()
    if missing:
        print(
            "real benchmark skipped: data not found: " + "; ".join(missing) + " (pass "
            "--street-train/--street-queries/--products or set CLOTHES_RETRIEVAL_SHARED_DATA)",
            file=sys.stderr,
        )
        return 0 if args.skip_missing else 2
    if config.tuning:
        lo, hi = config.street_split.queries
        print(
            f"tuning run: queries are training-part photos {lo}-{hi}, not the benchmark's "
            "query photos; choose settings here, then run without --tuning once",
            file=sys.stderr,
        )
    result = run_real_benchmark(config, progress=not args.no_progress, detect=not args.gt_only)
    for name, res in result.results.items():
        gt = " ".join(f"{k} {v:.3f}" for k, v in res["gt"].items())
        det = " ".join(f"{k} {v:.3f}" for k, v in res.get("detected", {}).items())
        print(f"{name}: gt {gt} | detected {det}")
    print(f"report: {result.report_path} ({result.seconds:.0f} s)")
    print(result.line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clothes-retrieval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample-data", help="write the synthetic DeepFashion2-layout sample")
    p.add_argument("--out", type=Path, required=True, help="dataset root to write")
    p.add_argument("--config", type=Path, help="YAML with SampleDataConfig keys (or a profile)")
    p.add_argument("--seed", type=int)
    p.add_argument("--dvc-track", type=Path, help="folder to `dvc add` afterwards (e.g. data)")
    p.add_argument("--dvc-repo", type=Path, default=Path("."), help="DVC repository root")
    p.set_defaults(func=_cmd_sample_data)

    p = sub.add_parser("items", help="read a DeepFashion2-layout dataset into the item table")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--splits", nargs="+", default=["train", "validation"])
    p.set_defaults(func=_cmd_items)

    p = sub.add_parser(
        "real-benchmark",
        help="real street-to-shop benchmark: street garments -> product photos, Acc@k",
    )
    p.add_argument("--street-train", type=Path, help="street photos to train detectors on")
    p.add_argument("--street-queries", type=Path, help="street photos whose garments are queries")
    p.add_argument(
        "--products", type=Path, help="product photos: train/<class>, validation/<class>"
    )
    p.add_argument("--config", type=Path, help="benchmark YAML (configs/real_benchmark.yaml)")
    p.add_argument("--out", type=Path, help="output folder (default: the config's output_dir)")
    p.add_argument("--skip-missing", action="store_true", help="exit 0 when data is absent")
    p.add_argument(
        "--tuning",
        action="store_true",
        help="run on the config's tuning_split of the street training photos (to choose "
        "settings without looking at the query photos), in tuning_output_dir",
    )
    p.add_argument(
        "--gt-only",
        action="store_true",
        help="ground-truth boxes only: no detector training or detection",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_real_benchmark)

    p = sub.add_parser("check-config", help="validate a pipeline profile")
    p.add_argument("profile", type=Path)
    p.set_defaults(func=_cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

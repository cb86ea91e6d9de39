"""Command-line interface: ``clothes-retrieval <command>``.

Commands:
  sample-data   write the synthetic DeepFashion2-layout sample (and `dvc add` it)
  items         read a DeepFashion2-layout dataset into the item and quarantine tables
  check-config  validate a pipeline profile and print it fully resolved (every stage)
  weights       the pretrained weight files a profile needs, and which are missing
  run           run a profile end to end through Dagster (`make run`: the sample;
                `make real-benchmark`: the real street-to-shop profile; `make smoke`:
                the DeepFashion2 profile at paper size on the sample)
  search        find the shop items of the garments in street photos (a published bundle)
  serve         the HTTP API and web page on a published bundle

`run` materialises the whole asset graph in the persistent Dagster instance; the other
commands call single stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from clothes_retrieval.config import ConfigError, load_yaml, validate_config
from clothes_retrieval.versioning.dvc import DvcError

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
    print(json.dumps(dataclasses.asdict(summary), indent=2, default=str))
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

    config = validate_config(ReaderConfig, {"splits": args.splits}, source="--splits")
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
    from clothes_retrieval.profile import describe_profile, load_profile, parse_overrides

    profile = load_profile(args.profile, parse_overrides(args.set or []))
    print(json.dumps(profile.dump(), indent=2, default=str))
    print(describe_profile(profile), file=sys.stderr)  # stdout stays JSON
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from clothes_retrieval.profile import load_profile, parse_overrides
    from clothes_retrieval.weights import weights_table

    profile = load_profile(args.profile, parse_overrides(args.set or []))
    rows = weights_table(profile)
    print(f"{profile.name}: pretrained weights (weights.dir: {profile.weights.dir})")
    for row in rows:
        size = f"{row['size_mb']:.1f} MB" if row["size_mb"] is not None else "-"
        print(
            f"  {row['status']:<7} {row['backbone']:<28} {row['file']}\n"
            f"          size {size}; used by {', '.join(row['used_by'])}"
        )
    missing = [r for r in rows if r["status"] != "ok"]
    if missing:
        print(
            f"{len(missing)} file(s) missing: copy them there, or set "
            "weights.backbones.<backbone>: random",
            file=sys.stderr,
        )
    return 1 if missing else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from clothes_retrieval.profile import parse_overrides
    from orchestration.run import InstanceInUse, MissingData, run_profile

    overrides = parse_overrides(args.set or [])
    try:
        outcome = run_profile(args.profile, overrides)
    except MissingData as exc:
        print(f"{'skipped' if args.skip_missing else 'error'}: {exc}", file=sys.stderr)
        return 0 if args.skip_missing else 2
    except InstanceInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    profile = outcome.profile
    if profile.tuning_of is not None:
        print(
            f"tuning run of {profile.tuning_of}: queries are its training photos; choose "
            "settings here, then run that profile once",
            file=sys.stderr,
        )
    status = "succeeded" if outcome.success else "FAILED: " + ", ".join(outcome.failed)
    print(f"\n{profile.name}: pipeline {status} in {outcome.seconds:.0f} s")
    print(f"  outputs:  {profile.output_dir}")
    print(f"  Dagster:  {os.environ.get('DAGSTER_HOME')} (make dagster PROFILE={args.profile})")
    if outcome.report is not None:
        print(f"  report:   {outcome.report}")
        for key, value in outcome.headline.items():
            print(f"    {key}: {value:.4f}")
    if (profile.output_dir / "published_index" / "bundle.json").is_file():
        print(
            f"  serve:    clothes-retrieval serve --profile {args.profile} "
            f"(make serve; http://{profile.serve.host}:{profile.serve.port}/)"
        )
    if outcome.line:
        print(outcome.line)
    return 0 if outcome.success else 1


def _bundle_dir(args: argparse.Namespace) -> tuple[Path, object]:
    """The bundle folder (``--bundle``, else the profile's published_index) and the serve
    settings (the profile's ``serve`` section, defaults with ``--bundle``)."""
    from clothes_retrieval.profile import load_profile, parse_overrides
    from clothes_retrieval.service import ServeConfig

    if args.bundle is not None:
        return args.bundle, ServeConfig()
    profile = load_profile(args.profile, parse_overrides(getattr(args, "set", None) or []))
    return profile.output_dir / "published_index", profile.serve


def _print_answer(photo: str, answer) -> None:
    print(
        f"{photo}: {len(answer.items)} garment(s)"
        + (f" ({answer.reason})" if answer.reason else "")
    )
    for n, item in enumerate(answer.items, start=1):
        box = ", ".join(f"{v:.0f}" for v in item.box)
        print(f"  {n}. {item.category}  score {item.score:.3f}  box [{box}]")
        for rank, r in enumerate(item.results, start=1):
            print(
                f"       {rank:>2}. {r.gallery_id:<14} shop image {r.image_id:<10} "
                f"similarity {r.similarity:.3f}  {r.category}"
            )


def _cmd_search(args: argparse.Namespace) -> int:
    from clothes_retrieval.service import BundleError, InputError, SearchService

    bundle, config = _bundle_dir(args)
    try:
        service = SearchService(bundle, limits=config.limits, device=config.device)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed, out = 0, []
    for photo in args.photos:
        try:
            answer = service.search(
                Path(photo).read_bytes(),
                top_k=args.top_k,
                detect=not args.no_detect,
                max_items=args.max_items,
            )
        except (OSError, InputError) as exc:  # one bad photo does not stop the others
            failed += 1
            print(f"error: {photo}: {exc}", file=sys.stderr)
            out.append({"photo": str(photo), "error": str(exc)})
            continue
        if args.json:
            out.append({"photo": str(photo), **dataclasses.asdict(answer)})
        else:
            _print_answer(str(photo), answer)
    if args.json:
        print(json.dumps({"bundle": service.info(), "photos": out}, indent=2))
    return 1 if failed else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from clothes_retrieval.service import BundleError, ServiceHolder
    from clothes_retrieval.service.http import serve

    bundle, config = _bundle_dir(args)
    overrides = (
        ("host", args.host),
        ("port", args.port),
        ("batch_window_ms", args.batch_window_ms),
        ("max_batch", args.max_batch),
        ("gallery_state", args.gallery_state),
    )
    config = config.model_copy(update={k: v for k, v in overrides if v is not None})
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    try:
        holder = ServiceHolder(
            bundle, state_dir=config.gallery_state, limits=config.limits, device=config.device
        )
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = holder.service.info()
    print(
        f"serving bundle {info['bundle_id']} ({info['profile']}, data {info['data_version']}, "
        f"{info['gallery_items']} gallery items) on http://{config.host}:{config.port}/",
        flush=True,
    )
    serve(holder, config)
    return 0


def _bundle_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--profile",
        type=Path,
        default=Path("configs/pipeline/sample.yaml"),
        help="serve this profile's published_index (default: the sample)",
    )
    where.add_argument("--bundle", type=Path, help="a published bundle folder")


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
        "run", help="run a profile end to end through Dagster (data to report and publish)"
    )
    p.add_argument("--profile", type=Path, default=Path("configs/pipeline/sample.yaml"))
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a profile key (dotted path, YAML value), e.g. "
        "data.sources.street_queries.root=/photos; repeatable",
    )
    p.add_argument("--skip-missing", action="store_true", help="exit 0 when data is absent")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a pipeline profile")
    p.add_argument("profile", type=Path)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="as for `run`")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser(
        "weights", help="the pretrained weight files a profile needs: file, size, used by"
    )
    p.add_argument("--profile", type=Path, default=Path("configs/pipeline/sample.yaml"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="as for `run`")
    p.set_defaults(func=_cmd_weights)

    p = sub.add_parser("search", help="find the shop items of the garments in street photos")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    _bundle_args(p)
    p.add_argument("--top-k", type=int, help="results per garment (default 10)")
    p.add_argument("--max-items", type=int, help="garments searched per photo (default 5)")
    p.add_argument("--no-detect", action="store_true", help="search with the whole photo")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("serve", help="the HTTP API and web page on a published bundle")
    _bundle_args(p)
    p.add_argument("--host", help="listen address (default: the profile's, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: the profile's, 8000)")
    p.add_argument(
        "--batch-window-ms",
        type=float,
        help="how long a search waits for others to batch with (0: no batching; default 5)",
    )
    p.add_argument("--max-batch", type=int, help="most photos in one batch (default 8)")
    p.add_argument(
        "--gallery-state",
        type=Path,
        metavar="DIR",
        help="where gallery changes are kept (default: <bundle>.gallery beside it)",
    )
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it loads
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, DvcError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

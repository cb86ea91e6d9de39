"""Validation AP of detectors against their training time: where the sample's detector
budget should go (issue #16). Each (detector, epochs) pair trains from scratch on a run's
``coco_exports`` (train.json) and is scored by mmdet's COCO metric on its validation file
at the last epoch; one CSV row per pair.

    .venv/bin/python scripts/detector_curve.py --coco outputs/sample/coco_exports \\
        --detectors atss centernet --epochs 2 4 6 --out /tmp/curve.csv

``--coco`` is the ``coco_exports`` folder of a finished ``make run`` (or any profile's);
the detectors are the profile's configs with its weights (``--profile``, default the
sample). Epoch counts must be multiples of the profile's ``val_interval`` (the sample: 2)
so that the last epoch is validated.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import yaml

from clothes_retrieval.detection.train import train_detector
from clothes_retrieval.profile import load_profile
from clothes_retrieval.weights import detector_config


def _with(config, profile: str, settings: list[str]):
    """``config`` with ``key=value`` fields of its training profile ``profile`` replaced."""
    if not settings:
        return config
    update = {}
    for item in settings:
        key, _, value = item.partition("=")
        update[key] = yaml.safe_load(value)
    training = getattr(config.profiles, profile)
    training = type(training).model_validate({**training.model_dump(), **update})
    profiles = config.profiles.model_copy(update={profile: training})
    return config.model_copy(update={"profiles": profiles})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--coco", type=Path, required=True, help="a run's coco_exports folder")
    p.add_argument("--profile", type=Path, default=Path("configs/pipeline/sample.yaml"))
    p.add_argument("--detectors", nargs="+", default=None, help="default: the profile's")
    p.add_argument("--epochs", nargs="+", type=int, default=[2, 4, 6])
    p.add_argument("--out", type=Path, default=Path("detector_curve.csv"))
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the detectors' training profile (YAML value), e.g. lr=0.004",
    )
    args = p.parse_args(argv)
    train_json, val_json = args.coco / "train.json", args.coco / "validation.json"
    for path in (train_json, val_json):
        if not path.is_file():
            print(f"{path} does not exist: point --coco at a run's coco_exports", file=sys.stderr)
            return 2
    profile = load_profile(args.profile)
    stage = profile.detection
    taxonomy = profile.data.load_taxonomy()
    rows = []
    for name in args.detectors or list(stage.detectors):
        config = _with(detector_config(profile, name), stage.profile, args.set)
        for epochs in args.epochs:
            with tempfile.TemporaryDirectory(prefix=f"curve-{name}-") as work:
                result = train_detector(
                    config,
                    stage.profile,
                    train_json,
                    val_json,
                    work,
                    device=stage.device,
                    max_epochs=epochs,
                    tracker_mode="disabled",
                    progress=False,
                    cpu_threads=stage.cpu_threads,
                    classes=taxonomy.classes if taxonomy else None,
                )
            row = {
                "detector": name,
                "epochs": epochs,
                "set": " ".join(args.set),
                "seconds": round(result.seconds, 1),
                "AP": result.metrics.get("coco/bbox_mAP", float("nan")),
                "AP50": result.metrics.get("coco/bbox_mAP_50", float("nan")),
            }
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            with args.out.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row))
                writer.writeheader()
                writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Estimates on paper for a pipeline profile: parameters, FLOPs, training memory and
GPU-hours of each detector and retrieval model it trains (clothes_retrieval.estimates).

Usage:
  .venv/bin/python scripts/estimates.py --profile configs/pipeline/deepfashion2.yaml \\
      [--device-tflops 312 --utilisation 0.4 --out estimates.md] [--set key=value ...]

Prints the Markdown table (and writes it to --out). Measures on the CPU: a few seconds per
paper-size detector, less per retrieval architecture; set OMP_NUM_THREADS on a shared host.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded


def main(argv: list[str] | None = None) -> int:
    from clothes_retrieval.estimates import estimate_profile, estimates_markdown
    from clothes_retrieval.io import write_text
    from clothes_retrieval.profile import load_profile, parse_overrides

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", required=True, help="a pipeline profile YAML")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="profile overrides"
    )
    p.add_argument("--device-tflops", type=float, default=312.0, help="device peak (TFLOPS)")
    p.add_argument("--utilisation", type=float, default=0.4, help="fraction of the peak reached")
    p.add_argument(
        "--device-name", default=None, help="default: 'A100 bf16 dense peak' at 312 TFLOPS"
    )
    p.add_argument(
        "--identities",
        type=int,
        default=None,
        help="classes of the retrieval classifier / centres (default: left out)",
    )
    p.add_argument("--out", default=None, help="also write the Markdown here")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    profile = load_profile(args.profile, parse_overrides(args.set))
    df = estimate_profile(
        profile,
        device_tflops=args.device_tflops,
        utilisation=args.utilisation,
        device_name=args.device_name,
        identities=args.identities,
        progress=not args.quiet,
    )
    text = estimates_markdown(df, title=f"Estimates on paper: {profile.name}")
    if args.out:
        write_text(args.out, text)
        logging.getLogger("estimates").info("wrote %s", args.out)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

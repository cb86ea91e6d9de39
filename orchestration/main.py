"""The main job, as the README's first command runs it (`make run`).

1. Generate the synthetic sample into the profile's data root when the profile asks for it
   (skipped when the data there already matches the sample config), then `dvc add` it so
   data.dvc carries the new hash.
2. Materialise every asset of the code location in a persistent Dagster instance
   (``DAGSTER_HOME``, default ``.dagster/``), so `make dagster` shows the same runs,
   lineage and metadata in the UI.
3. Print where the outputs are.

``--real-benchmark also`` then runs ``real_benchmark_job`` (street photos -> product photos,
see README) in the same instance, and ``--real-benchmark only`` runs just that; either is
skipped, with a message, when the real photos are absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from clothes_retrieval.data.sample import generate_sample_data
from clothes_retrieval.profile import load_profile, project_root_of
from clothes_retrieval.versioning import dvc_add

logger = logging.getLogger("clothes_retrieval.main")


def _sample_is_current(root: Path, sample_config: dict) -> bool:
    manifest = root / "sample_manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("config") == sample_config
    except (json.JSONDecodeError, OSError):
        return False


def prepare_data(profile_path: Path) -> None:
    """Generate the sample (if configured and stale) and record its DVC hash."""
    profile = load_profile(profile_path)
    if not profile.data.generate_sample:
        return
    root = profile.data.root
    wanted = profile.sample.model_dump(mode="json")
    if _sample_is_current(root, wanted):
        logger.info("sample data in %s is current", root)
    else:
        logger.info("generating the synthetic sample into %s", root)
        generate_sample_data(profile.sample, root)
    dvc_file = profile.data.dvc_file
    if dvc_file is not None:
        tracked = dvc_file.with_suffix("")  # data.dvc tracks ./data
        dvc_add(tracked, repo_root=project_root_of(profile_path))


# Stage jobs in pipeline order; partitioned ones run once per partition key.
STAGES = ("data_job", "detection_job", "fusion_job", "retrieval_job", "search_job")


def run_stages(defs, instance) -> bool:
    """Run every stage job of ``defs`` in order; stop at the first failure. True on success."""
    available = {job.name for job in defs.jobs or []}
    for name in STAGES:
        if name not in available:  # a stage this profile does not configure
            continue
        job = defs.resolve_job_def(name)
        keys = job.partitions_def.get_partition_keys() if job.partitions_def else [None]
        for key in keys:
            label = f"{name}[{key}]" if key else name
            logger.info("running %s", label)
            start = time.time()
            result = job.execute_in_process(
                instance=instance, partition_key=key, raise_on_error=False
            )
            logger.info(
                "%s %s in %.0f s",
                label,
                "succeeded" if result.success else "FAILED",
                time.time() - start,
            )
            if not result.success:
                return False
    return True


def run_main_job(profile_path: Path) -> bool:
    """Materialise everything in the persistent instance; True on success."""
    import dagster as dg

    from orchestration.defs import build_definitions

    project = project_root_of(profile_path)
    os.environ.setdefault("DAGSTER_HOME", str(project / ".dagster"))
    os.environ.setdefault("CLOTHES_RETRIEVAL_PROFILE", str(profile_path))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    defs = build_definitions(str(profile_path))
    with dg.DagsterInstance.get() as instance:
        return run_stages(defs, instance)


def run_real_benchmark_job() -> tuple[bool | None, str]:
    """Run ``real_benchmark_job`` in the persistent instance: (success or None when the data
    is absent, the benchmark's last line or why it was skipped)."""
    import dagster as dg

    from clothes_retrieval.real_benchmark import load_benchmark_config
    from orchestration.defs import build_definitions
    from orchestration.defs.real_benchmark_assets import CONFIG_ENV

    config = load_benchmark_config(os.environ.get(CONFIG_ENV))
    missing = config.missing_roots()
    if missing:
        return None, "real benchmark skipped: data not found: " + "; ".join(missing)
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / ".dagster"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    defs = build_definitions()
    start = time.time()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("real_benchmark_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        logger.info("real_benchmark_job %s in %.0f s", result.success, time.time() - start)
        if not result.success:
            return False, "real benchmark FAILED (see the Dagster run's logs)"
        event = instance.get_latest_materialization_event(dg.AssetKey("real_benchmark_report"))
        return True, str(event.asset_materialization.metadata["line"].value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", type=Path, default=Path("configs/pipeline/sample.yaml"))
    parser.add_argument(
        "--real-benchmark",
        choices=["off", "also", "only"],
        default="off",
        help="also (or only) run the real street-to-shop benchmark job (~1 h on 2 cores)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.real_benchmark == "only":
        ok, line = run_real_benchmark_job()
        print(line)
        return 1 if ok is False else 0
    profile_path = args.profile.resolve()
    start = time.time()
    prepare_data(profile_path)
    ok = run_main_job(profile_path)
    profile = load_profile(profile_path)
    elapsed = time.time() - start
    print(f"\nmain job {'succeeded' if ok else 'FAILED'} in {elapsed:.0f} s")
    print(f"  data:      {profile.data.root}")
    print(f"  outputs:   {profile.output_dir}")
    for child in sorted(profile.output_dir.iterdir()) if profile.output_dir.is_dir() else []:
        print(f"    {child.name}")
    report = profile.output_dir / "evaluation_report"
    if (report / "report.json").is_file():
        headline = json.loads((report / "report.json").read_text())["headline"]
        print(f"  report:    {report / 'report.html'}")
        print(f"             {report / 'report.md'}")
        for key, value in headline.items():
            print(f"    {key}: {value:.4f}")
    print(f"  Dagster:   DAGSTER_HOME={os.environ.get('DAGSTER_HOME')} (make dagster to browse)")
    if args.real_benchmark == "also" and ok:
        real_ok, line = run_real_benchmark_job()
        ok = real_ok is not False
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

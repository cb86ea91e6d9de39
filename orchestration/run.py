"""Run a profile end to end through Dagster: what `clothes-retrieval run` (and so `make run`
and `make real-benchmark`) calls.

1. Validate the profile with the ``--set`` overrides (an unknown key is named with its
   full path) and check that every source folder exists.
2. Generate the synthetic sample into its source's folder when the profile asks for it
   (skipped when the data there already matches the sample config), then `dvc add` it so
   its .dvc file carries the new hash.
3. Materialise the whole asset graph as one run of ``pipeline_job`` in the profile's
   persistent instance (``DAGSTER_HOME``, default ``<project>/.dagster/<profile name>``), so
   `make dagster` shows the same run, lineage, metadata and checks.
4. Return where the report is and its last line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clothes_retrieval.data.sample import generate_sample_data
from clothes_retrieval.profile import PipelineProfile, load_profile, project_root_of
from clothes_retrieval.versioning import dvc_add
from clothes_retrieval.weights import check_weights

logger = logging.getLogger("clothes_retrieval.run")

# One run at a time on a one-machine instance: the automation's rebuilds queue behind each
# other instead of embedding and searching on the same cores at once. Trainings also take a
# slot of the ``gpu`` pool (sized by clothes-retrieval from operations.gpu_slots), which is
# what keeps them apart on a team's instance with more runs at once (deploy/dagster.yaml).
INSTANCE_YAML = """\
# Written by clothes-retrieval (orchestration/run.py); edit freely.
concurrency:
  runs:
    max_concurrent_runs: 1
telemetry:
  enabled: false
"""


# A dagster.yaml that new instances start from instead of INSTANCE_YAML (a team's
# PostgreSQL instance: deploy/dagster.yaml).
INSTANCE_TEMPLATE_ENV = "CLOTHES_RETRIEVAL_INSTANCE_TEMPLATE"


def instance_yaml() -> str:
    """What a new instance's dagster.yaml holds: the template when one is set."""
    template = os.environ.get(INSTANCE_TEMPLATE_ENV)
    if not template:
        return INSTANCE_YAML
    path = Path(template)
    if not path.is_file():
        raise FileNotFoundError(
            f"{INSTANCE_TEMPLATE_ENV}={template}: no such file (point it at a dagster.yaml, "
            "e.g. deploy/dagster.yaml, or unset it for the default SQLite instance)"
        )
    return path.read_text()


class MissingData(FileNotFoundError):
    """A profile's source folder does not exist."""


@dataclass(frozen=True)
class RunOutcome:
    success: bool
    profile: PipelineProfile
    seconds: float
    line: str | None = None  # the evaluation report's last line
    report: Path | None = None
    headline: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # steps that failed


class InstanceInUse(RuntimeError):
    """The Dagster instance already holds another profile's runs."""


PROFILE_MARK = "profile.txt"  # which profile's asset history an instance holds


def dagster_home(project: Path, profile: str) -> Path:
    """The Dagster instance of ``profile``: ``$DAGSTER_HOME``, default
    ``<project>/.dagster/<profile>``, created with :func:`instance_yaml` when it has none.

    Every profile has the same asset keys (one graph, many profiles), so two profiles in one
    instance would mix their materialisations, staleness and automation: an instance that
    holds another profile's runs raises :class:`InstanceInUse`.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or project / ".dagster" / profile)
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").is_file():
        (home / "dagster.yaml").write_text(instance_yaml())
    mark = home / PROFILE_MARK
    if mark.is_file() and mark.read_text().strip() != profile:
        raise InstanceInUse(
            f"the Dagster instance {home} holds profile {mark.read_text().strip()!r}; "
            f"profile {profile!r} would mix its assets with those: unset DAGSTER_HOME (each "
            f"profile then gets <project>/.dagster/<name>) or point it at another folder"
        )
    mark.write_text(profile + "\n")
    return home


def missing_roots(profile: PipelineProfile) -> list[str]:
    """``data.sources.<name>: <root> does not exist`` for each absent source folder."""
    if profile.data.generate_sample:
        return []
    return [
        f"data.sources.{name}: {spec.root} does not exist"
        for name, spec in profile.data.sources.items()
        if not Path(spec.root).is_dir()
    ]


def _sample_is_current(root: Path, sample_config: dict) -> bool:
    manifest = root / "sample_manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("config") == sample_config
    except (json.JSONDecodeError, OSError):
        return False


def prepare_data(profile: PipelineProfile, project: Path) -> None:
    """Generate the sample (if configured and stale) and record its DVC hash."""
    if not profile.data.generate_sample:
        return
    spec = profile.data.sample_source
    wanted = profile.sample.model_dump(mode="json")
    if _sample_is_current(spec.root, wanted):
        logger.info("sample data in %s is current", spec.root)
    else:
        logger.info("generating the synthetic sample into %s", spec.root)
        generate_sample_data(profile.sample, spec.root)
    if spec.dvc_file is not None:
        dvc_add(spec.dvc_file.with_suffix(""), repo_root=project)  # data.dvc tracks ./data


def run_profile(profile_path: str | Path, overrides: dict[str, Any] | None = None) -> RunOutcome:
    """Run every asset of the profile in one Dagster run (module docstring).

    Raises ``ConfigError`` for a bad profile or override, :class:`MissingData` naming
    every absent source folder, ``MissingWeightsError`` naming every missing pretrained
    weight file (and what needs it) and :class:`InstanceInUse` for another profile's instance,
    before anything runs.
    """
    import dagster as dg

    from orchestration.defs import build_definitions
    from orchestration.defs.jobs import PIPELINE_JOB
    from orchestration.defs.operations import configure_instance, person_tags
    from orchestration.defs.search_assets import EVALUATION_REPORT

    profile_path = Path(profile_path).resolve()
    profile = load_profile(profile_path, overrides)
    missing = missing_roots(profile)
    if missing:
        raise MissingData(
            "data not found: " + "; ".join(missing) + " (point the profile at the data, e.g. "
            "--set data.sources.<name>.root=DIR, or set CLOTHES_RETRIEVAL_SHARED_DATA)"
        )
    check_weights(profile)  # every missing weight file named before anything trains
    project = project_root_of(profile_path)
    home = dagster_home(project, profile.name)
    start = time.time()
    prepare_data(profile, project)
    defs = build_definitions(str(profile_path), json.dumps(overrides or {}))
    job = defs.resolve_job_def(PIPELINE_JOB)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        configure_instance(instance, profile)
        result = job.execute_in_process(instance=instance, raise_on_error=False, tags=person_tags())
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        line, report, headline = None, None, {}
        for event in result.get_asset_materialization_events():
            if event.asset_key == EVALUATION_REPORT:
                meta = event.materialization.metadata
                line = str(meta["line"].value)
                report = Path(str(meta["report"].value))
                headline = {
                    k: float(v.value)
                    for k, v in meta.items()
                    if isinstance(v, dg.FloatMetadataValue)
                }
    return RunOutcome(result.success, profile, time.time() - start, line, report, headline, failed)


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestration.run PROFILE``: print (and prepare) the profile's instance
    folder; `make dagster` starts the UI on it."""
    args = argv if argv is not None else sys.argv[1:]
    profile_path = Path(args[0] if args else "configs/pipeline/sample.yaml").resolve()
    import dagster as dg

    from orchestration.defs.operations import configure_instance

    profile = load_profile(profile_path)
    home = dagster_home(project_root_of(profile_path), profile.name)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        configure_instance(instance, profile)
    print(home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

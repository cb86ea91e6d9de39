"""A new DVC hash makes the data assets stale and the automation requests their rebuild."""

from pathlib import Path

import dagster as dg
import pandas as pd

from clothes_retrieval.data.sample import SampleDataConfig, generate_sample_data
from clothes_retrieval.versioning import dvc_add, read_dvc_hash
from orchestration.defs import build_definitions
from orchestration.defs.resources import PipelineResource
from tests.orchestration.tiny_project import TINY_SAMPLE, make_project

DATA_ASSETS = {"item_table", "coco_exports", "retrieval_crops"}


def _requested(result) -> set[str]:
    return {r.key.to_user_string() for r in result.results if r.true_subset.size}


def test_new_dvc_hash_triggers_rebuild(tmp_path: Path):
    profile = make_project(tmp_path / "project")
    project = profile.parents[1]
    defs = build_definitions(str(profile))
    sensor = defs.resolve_sensor_def("data_version_sensor")
    resources = {"pipeline": PipelineResource(profile_path=str(profile))}

    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("data_job").execute_in_process(instance=instance).success
        first_hash = read_dvc_hash(project / "data.dvc")
        items_before = pd.read_parquet(
            project / "outputs" / "tiny" / "item_table" / "items.parquet"
        )

        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert tick.total_requested == 0  # everything fresh

        with dg.build_sensor_context(
            instance=instance, cursor=first_hash, resources=resources
        ) as ctx:
            assert not sensor(ctx).run_requests  # same hash: nothing to observe

        # The data changes: a new sample, tracked with dvc add.
        generate_sample_data(
            SampleDataConfig(**{**TINY_SAMPLE, "seed": TINY_SAMPLE["seed"] + 1}),
            project / "data" / "sample",
            progress=False,
        )
        new_hash = dvc_add(project / "data", repo_root=project)
        assert new_hash != first_hash

        with dg.build_sensor_context(
            instance=instance, cursor=first_hash, resources=resources
        ) as ctx:
            result = sensor(ctx)
        assert [r.run_key for r in result.run_requests] == [new_hash]
        assert (
            defs.resolve_job_def("observe_raw_dataset")
            .execute_in_process(instance=instance)
            .success
        )

        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert _requested(tick) == DATA_ASSETS

        # Run what the automation asked for: the item table now reflects the new data.
        job = dg.define_asset_job("rebuild", selection=sorted(DATA_ASSETS))
        rebuilt = dg.Definitions(
            assets=list(defs.assets or []),
            asset_checks=list(defs.asset_checks or []),
            jobs=[job],
            resources=dict(defs.resources or {}),
        )
        assert rebuilt.resolve_job_def("rebuild").execute_in_process(instance=instance).success
        items_after = pd.read_parquet(project / "outputs" / "tiny" / "item_table" / "items.parquet")
        assert not items_after[["image_path", "x1", "y1"]].equals(
            items_before[["image_path", "x1", "y1"]]
        )
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.total_requested == 0

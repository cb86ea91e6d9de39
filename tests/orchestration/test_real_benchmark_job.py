"""Level 3: the real benchmark job materialises its assets on a handful of real photos."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.defs.real_benchmark_assets import (
    REAL_BENCHMARK_ASSETS,
    RealBenchmarkResource,
    real_benchmark_job,
)
from tests.real_benchmark.conftest import SMOKE

ASSETS = {
    "real_street_train_items",
    "real_query_items",
    "real_product_items",
    "real_fused_boxes",
    "real_retrieval_models",
    "real_benchmark_report",
}


@pytest.mark.real_data
def test_real_benchmark_job(tmp_path: Path) -> None:
    from clothes_retrieval.real_benchmark import shared_data_root

    if not (shared_data_root() / "ccp").is_dir():
        pytest.skip("real photos not found")
    config = tmp_path / "smoke.yaml"
    config.write_text(yaml.safe_dump({**SMOKE, "output_dir": str(tmp_path / "out")}))
    defs = dg.Definitions(
        assets=REAL_BENCHMARK_ASSETS,
        jobs=[real_benchmark_job],
        resources={"real_benchmark": RealBenchmarkResource(config_path=str(config))},
    )
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("real_benchmark_job").execute_in_process(instance=instance)
        assert result.success
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert done == ASSETS
        report = instance.get_latest_materialization_event(dg.AssetKey("real_benchmark_report"))
        meta = report.asset_materialization.metadata
        assert meta["line"].value.startswith("real benchmark: gt acc@1 ")
        assert Path(meta["report"].value).is_file()
        queries = instance.get_latest_materialization_event(dg.AssetKey("real_query_items"))
        assert queries.asset_materialization.metadata["photos"].value == 4
        checks = result.get_asset_check_evaluations()
        assert [c.check_name for c in checks] == ["real_benchmark_targets"]


def test_source_assets_fail_with_the_missing_root_named(tmp_path: Path) -> None:
    defs = dg.Definitions(
        assets=REAL_BENCHMARK_ASSETS,
        jobs=[real_benchmark_job],
        resources={
            "real_benchmark": RealBenchmarkResource(
                street_train=str(tmp_path / "absent"), output_dir=str(tmp_path / "out")
            )
        },
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [a for a in REAL_BENCHMARK_ASSETS if a.key.path[0] == "real_street_train_items"],
            instance=instance,
            resources={"real_benchmark": defs.resources["real_benchmark"]},
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert str(tmp_path / "absent") in str(failure.event_specific_data.error)

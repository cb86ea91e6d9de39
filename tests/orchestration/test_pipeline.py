"""Level 3: every stage on a tiny sample (two tiny retrieval models), as `make run` runs it,
then the blocking accuracy floor that stops publishing."""

from pathlib import Path

import dagster as dg
import yaml

from orchestration.defs import build_definitions
from orchestration.main import run_stages
from tests.orchestration.tiny_project import make_project


def test_all_stages_then_the_floor_blocks_publishing(tmp_path: Path):
    profile = make_project(tmp_path / "project", with_models=True)
    out = profile.parents[1] / "outputs" / "tiny"
    defs = build_definitions(str(profile))
    with dg.instance_for_test() as instance:
        assert run_stages(defs, instance)
        for name in (
            "item_table",
            "retrieval_model",
            "embeddings",
            "search_index",
            "evaluation_report",
            "published_index",
        ):
            assert instance.get_latest_materialization_event(dg.AssetKey(name)) is not None, name
        model_dirs = sorted(p.name for p in (out / "retrieval_model").iterdir())
        assert model_dirs == ["sample_lite0_gem", "sample_lite0_gem_mac"]
        report = (out / "evaluation_report" / "report.md").read_text()
        assert "Table 3 layout" in report and "re-ranking" in report
        assert (out / "evaluation_report" / "report.html").stat().st_size > 10_000  # figures inline
        assert (out / "evaluation_report_submission.json").is_file()
        assert (out / "published_index" / "index.faiss").is_file()
        record = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report"))
        meta = record.asset_materialization.metadata
        assert 0.0 <= meta["published Acc@10"].value <= 1.0

        # An impossible floor: the report is still written, publishing is blocked.
        acc10 = meta["published Acc@10"].value
        assert acc10 < 1.0, "the tiny gallery must leave room for a failing floor"
        data = yaml.safe_load(profile.read_text())
        data["search"]["acc10_floor"] = 1.0
        strict = profile.with_name("strict.yaml")
        strict.write_text(yaml.safe_dump(data))
        published_before = instance.get_latest_materialization_event(
            dg.AssetKey("published_index")
        ).timestamp
        strict_defs = build_definitions(str(strict))
        result = strict_defs.resolve_job_def("search_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        evaluations = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert evaluations["acc10_floor"] is False
        materialised = {
            e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
        }
        assert "evaluation_report" in materialised and "published_index" not in materialised
        after = instance.get_latest_materialization_event(dg.AssetKey("published_index")).timestamp
        assert after == published_before  # the old published index stays as it was


def test_detection_fusion_and_fused_box_search(tmp_path: Path):
    profile = make_project(tmp_path / "project", with_models=True, with_detection=True)
    out = profile.parents[1] / "outputs" / "tiny"
    defs = build_definitions(str(profile))
    with dg.instance_for_test() as instance:
        assert run_stages(defs, instance)
        for name in ("detector_checkpoint", "detections", "detection_metrics", "fused_boxes"):
            assert instance.get_latest_materialization_event(dg.AssetKey(name)) is not None, name
        assert (out / "fused_boxes" / "fused.parquet").is_file()
        report = (out / "evaluation_report" / "report.md").read_text()
        assert (
            "Table 2 layout" in report and "Table 5 layout" in report and "Table 6 layout" in report
        )
        assert "paper: atss" in report

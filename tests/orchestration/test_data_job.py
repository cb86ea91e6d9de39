"""Level 3: the data job materialises the data stage on a tiny sample, with passing checks."""

from pathlib import Path

import dagster as dg

from orchestration.defs import build_definitions


def test_data_job_materialises_the_data_stage(tiny_project: Path):
    defs = build_definitions(str(tiny_project))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("data_job").execute_in_process(instance=instance)
        assert result.success
        observed = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        assert [e.asset_key.to_user_string() for e in observed] == ["raw_dataset"]
        materialised = {
            e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
        }
        assert materialised == {
            "item_table",
            "training_source_items",
            "coco_exports",
            "retrieval_crops",
        }
        checks = result.get_asset_check_evaluations()
        assert checks, "asset checks ran"
        failed = [c.check_name for c in checks if not c.passed]
        assert failed == []
        # Lineage: item_table's materialisation records the raw data version it came from.
        record = instance.get_latest_materialization_event(dg.AssetKey("item_table"))
        tags = record.asset_materialization.tags
        assert any(k.startswith("dagster/input_data_version") for k in tags)

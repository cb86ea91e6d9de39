"""Helpers of the rebuild tests: new data for a tiny project, and the order of a rebuild."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from clothes_retrieval.data.sample import SampleDataConfig, generate_sample_data
from clothes_retrieval.versioning import dvc_add, read_lineage
from tests.orchestration.tiny_project import TINY_SAMPLE

# Every artifact folder of the tiny profile with two detectors and the given models.
DETECTORS = ("atss", "centernet")


def new_data(project: Path, seed_offset: int = 7) -> str:
    """A new sample in the project's data folder, tracked with `dvc add`: its hash."""
    generate_sample_data(
        SampleDataConfig(
            **{**TINY_SAMPLE, "groups": {"train": 5, "validation": 10}, "seed": 3 + seed_offset}
        ),
        project / "data" / "sample",
        progress=False,
    )
    return dvc_add(project / "data", repo_root=project)


def artifact_folders(out: Path, models: tuple[str, ...]) -> list[Path]:
    named = [f"detector/{d}" for d in DETECTORS] + [f"detections/{d}" for d in DETECTORS]
    named += [f"model/{m}" for m in models] + [f"embeddings/{m}" for m in models]
    named += ["item_table", "coco_exports", "retrieval_crops", "fused_boxes", "search_index"]
    named += ["evaluation_report", "published_index"]
    return [out / n for n in named]


def assert_built_from(out: Path, models: tuple[str, ...], version: str) -> None:
    for folder in artifact_folders(out, models):
        assert read_lineage(folder) == version, folder


def assert_in_dependency_order(graph, built: dict[dg.AssetKey, float]) -> None:
    """Every materialisable asset was rebuilt (``built``: key -> when), each after all of
    its (materialisable) parents."""
    keys = set(graph.materializable_asset_keys)
    assert set(built) == keys, sorted(k.to_user_string() for k in keys - set(built))
    for key in keys:
        for parent in graph.get(key).parent_keys & keys:
            assert built[parent] < built[key], (parent, key)

"""Level 2: asset functions called directly on a tiny sample."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import yaml
from PIL import Image

from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.versioning import read_dvc_hash, read_lineage
from orchestration.defs.data_assets import build_data_assets
from orchestration.defs.resources import PipelineResource
from tests.orchestration.tiny_project import TINY_DETECTION


def _assets(pipeline: PipelineResource) -> dict:
    """The profile's data assets by key, as callables ``name(pipeline) -> result``."""
    profile = pipeline.load()
    out = {}
    for a in build_data_assets(profile):
        if isinstance(a, dg.AssetsDefinition):
            name = a.key.to_user_string()
            out[name] = lambda a=a: a(context=dg.build_asset_context(), pipeline=pipeline)
    return out


def test_assets_called_directly(tiny_project: Path, tmp_path: Path):
    # Write outputs to a private folder so other tests sharing the project are unaffected.
    profile_text = tiny_project.read_text().replace(
        "output_root: outputs", f"output_root: {tmp_path}"
    )
    profile = tiny_project.with_name("direct.yaml")
    profile.write_text(profile_text)
    data = yaml.safe_load(profile.read_text())
    data["detection"] = {"configs": TINY_DETECTION["configs"], "detectors": ["atss"]}
    profile.write_text(yaml.safe_dump(data))
    pipeline = PipelineResource(profile_path=str(profile))
    assets = _assets(pipeline)

    result = assets["item_table"]()
    items = read_item_table(Path(result.metadata["path"].value))
    assert result.metadata["items"] == len(items) > 0
    quarantine = pd.read_parquet(Path(result.metadata["quarantine_path"].value))
    # The sample injects broken records on purpose: each is quarantined, none kills the run.
    assert result.metadata["quarantined"] == len(quarantine) > 0
    assert set(items["split"]) == {"train", "validation"}

    # Every artifact records the data version it was built from: here the DVC hash.
    dvc_hash = read_dvc_hash(tiny_project.parents[1] / "data.dvc")
    assert result.metadata["data_version"] == dvc_hash
    assert read_lineage(Path(result.metadata["path"].value).parent) == dvc_hash

    coco = assets["coco_exports"]()
    assert coco.metadata["train_annotations"] == int((items["split"] == "train").sum())
    assert coco.metadata["data_version"] == dvc_hash

    crops = assets["retrieval_crops"]()
    table = pd.read_parquet(Path(crops.metadata["path"].value))
    assert crops.metadata["crops"] == len(table) > 0
    assert all(Path(p).is_file() for p in table["crop_path"])
    assert read_lineage(Path(crops.metadata["path"].value).parent) == dvc_hash


def _write_darn(root: Path, shop_copy: Image.Image) -> None:
    """A DARN-layout folder: two street-shop pairs; one shop photo is a copy of a sample
    shop garment (a cross-source duplicate)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("s1", "s2", "p2"):
        noise = rng.integers(0, 256, size=(80, 60, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((120, 160)).save(root / "images" / f"{name}.jpg")
    shop_copy.save(root / "images" / "p1.jpg", quality=95)
    (root / "pairs.txt").write_text(
        "images/s1.jpg\timages/p1.jpg\tcoat\ttrain\n"
        "images/s2.jpg\timages/p2.jpg\tskirt\ttrain\n"
        "images/s2.jpg\timages/p2.jpg\tskirt\ttest\n"  # another split: not read
    )


def test_extra_training_source_joins_the_crops(tiny_project: Path, tmp_path: Path):
    profile_data = yaml.safe_load(tiny_project.read_text())
    # The crops de-duplicate across sources: one DARN shop photo copies a sample garment.
    profile_data["output_root"] = str(tmp_path / "out")
    profile_data["crops"] = {**profile_data["crops"], "dedup_scope": "global"}
    plain = tiny_project.with_name("plain.yaml")
    plain.write_text(yaml.safe_dump(profile_data))
    result = _assets(PipelineResource(profile_path=str(plain)))["item_table"]()
    sample_items = read_item_table(Path(result.metadata["path"].value))
    shop = sample_items[(sample_items["source"] == "shop") & (sample_items["style"] > 0)].iloc[0]
    darn = tmp_path / "darn"
    with Image.open(shop["image_path"]) as im:
        _write_darn(darn, im.convert("RGB").crop((shop.x1, shop.y1, shop.x2, shop.y2)))

    # The DARN folder becomes a second source of the profile, with the training role.
    profile_data["data"]["sources"]["darn"] = {
        "source": "darn",
        "root": str(darn),
        "role": "training",
    }
    profile_data["data"]["taxonomy"] = "deepfashion2"
    profile = tiny_project.with_name("mixed.yaml")
    profile.write_text(yaml.safe_dump(profile_data, sort_keys=False))
    pipeline = PipelineResource(profile_path=str(profile))
    assets = _assets(pipeline)
    keys = {a.key.to_user_string() for a in build_data_assets(pipeline.load())}
    assert {"source/deepfashion2", "source/darn"} <= keys
    result = assets["item_table"]()
    per_source = result.metadata["items_per_source"].value
    assert per_source["darn"] == 4  # 2 street + 2 shop photos of the train split
    assert per_source["deepfashion2"] == len(sample_items)
    # Two sources: the recorded version combines both sources' versions.
    assert set(result.metadata["source_versions"].value) == {"deepfashion2", "darn"}
    crops = assets["retrieval_crops"]()
    table = pd.read_parquet(Path(crops.metadata["path"].value))
    darn_crops = table[table["dataset"] == "darn"]
    # DARN's own identities, in the training split; categories mapped to DeepFashion2's.
    assert set(darn_crops["split"]) == {"train"}
    assert darn_crops["identity"].str.startswith("darn/").all()
    assert set(darn_crops["category_id"]) <= {4, 9}  # long sleeve outwear, skirt
    # The copied shop photo and the sample garment it copies are near-duplicates across the
    # two sources: the pair is removed across sources (the sample repeats shop photos, so
    # other sample copies of that garment may go with it).
    removed = pd.read_parquet(
        Path(crops.metadata["path"].value).with_name("removed_duplicates.parquet")
    )
    origin = removed["item_uid"].str.split("/").str[0]
    across = removed[origin != removed["duplicate_of"].str.split("/").str[0]]
    assert len(across) >= 1, removed
    assert shop["item_uid"] in set(across["item_uid"]) | set(across["duplicate_of"])
    assert (
        across["duplicate_of"].str.startswith("darn/") | across["item_uid"].str.startswith("darn/")
    ).all()
    darn_removed = int(across["item_uid"].str.startswith("darn/").sum())
    assert len(darn_crops) + darn_removed == 4


def test_a_run_reads_the_profile_once(tiny_project: Path):
    """Editing the profile while a run goes changes the next run, not this run's later steps."""
    profile = tiny_project.with_name("snapshot.yaml")
    profile.write_text(tiny_project.read_text())
    seen = {}

    @dg.asset
    def first(pipeline: PipelineResource) -> None:
        seen["first"] = pipeline.load().name
        data = yaml.safe_load(profile.read_text())
        profile.write_text(yaml.safe_dump({**data, "name": "edited"}))  # mid-run edit

    @dg.asset(deps=[first])
    def second(pipeline: PipelineResource) -> None:
        seen["second"] = pipeline.load().name

    pipeline = PipelineResource(profile_path=str(profile))
    assert dg.materialize([first, second], resources={"pipeline": pipeline}).success
    assert seen["second"] == seen["first"] != "edited"
    # the next run (and anything outside a run) reads the file as it is now
    assert pipeline.load().name == "edited"
    assert dg.materialize([second], resources={"pipeline": pipeline}).success
    assert seen["second"] == "edited"

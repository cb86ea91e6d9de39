"""published_index as Dagster records it: the bundle check ran and passed, and its metadata
says how to start a server on the bundle; the CLI's search on the same bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg

from clothes_retrieval.cli import main
from clothes_retrieval.service import read_bundle_manifest
from tests.service.conftest import Published, detected_photo


def test_the_publish_records_its_check_and_how_to_serve(published: Published) -> None:
    instance = dg.DagsterInstance.from_config(str(published.home))
    key = dg.AssetKey("published_index")
    event = instance.get_latest_materialization_event(key)
    meta = event.asset_materialization.metadata
    manifest = read_bundle_manifest(published.bundle)
    assert meta["bundle_id"].value == manifest["bundle_id"]
    assert f"clothes-retrieval serve --bundle {published.bundle}" in meta["serve"].value
    assert meta["gallery_items"].value == manifest["gallery"]["items"]
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(key, "bundle_loads")]
    )[dg.AssetCheckKey(key, "bundle_loads")]
    evaluation = check.event.dagster_event.event_specific_data
    assert evaluation.passed
    assert evaluation.metadata["self_similarity"].value >= 0.99


def test_cli_search_prints_a_table_or_json(published: Published, service, capsys) -> None:
    photo = detected_photo(service, published)
    code = main(["search", str(photo), "--bundle", str(published.bundle), "--top-k", "2"])
    out = capsys.readouterr().out
    assert code == 0
    expected = service.search(photo.read_bytes(), top_k=2)
    assert f"{photo}: {len(expected.items)} garment(s)" in out
    assert expected.items[0].results[0].gallery_id in out

    blank = published.project / "blank.txt"
    blank.write_text("not a photo")
    code = main(
        [
            "search",
            str(blank),
            str(photo),
            "--bundle",
            str(published.bundle),
            "--json",
            "--no-detect",
            "--top-k",
            "3",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # one photo failed; the other was still answered
    assert f"error: {blank}" in captured.err and "not an image" in captured.err
    body = json.loads(captured.out)
    bad, good = body["photos"]
    assert "not an image" in bad["error"]
    (item,) = good["items"]
    assert item["category"] == "whole photo" and len(item["results"]) == 3
    assert body["bundle"]["bundle_id"] == read_bundle_manifest(published.bundle)["bundle_id"]


def test_cli_search_and_serve_name_a_missing_bundle(tmp_path: Path, capsys) -> None:
    for cmd in (["search", "x.jpg"], ["serve"]):
        assert main([*cmd, "--bundle", str(tmp_path / "none")]) == 2
        assert "no published bundle" in capsys.readouterr().err


def test_cli_search_of_a_profile_uses_its_published_index(
    published: Published, tmp_path: Path, capsys
) -> None:
    project = tmp_path / "p"
    shutil.copytree(published.project / "configs", project / "configs")
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    profile = project / "configs" / "tiny.yaml"
    photo = published.photos("user")[0]
    assert main(["search", str(photo), "--profile", str(profile)]) == 2
    assert str(project / "outputs" / "tiny" / "published_index") in capsys.readouterr().err
    shutil.copytree(published.bundle, project / "outputs" / "tiny" / "published_index")
    assert main(["search", str(photo), "--profile", str(profile), "--no-detect"]) == 0
    assert "whole photo" in capsys.readouterr().out

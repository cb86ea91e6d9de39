"""The command line: `sample-data`, `items` and `check-config` on good and bad input.

Commands are called in-process through :func:`clothes_retrieval.cli.main` (its return value
is the exit code); one test runs the installed ``clothes-retrieval`` entry point. A user
error (bad config, missing file or folder, bad ``--set``) exits 2 with ``error: ...`` on
stderr naming the problem; argparse's own usage errors exit 2 as well.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clothes_retrieval.cli import main
from clothes_retrieval.data import read_item_table, read_quarantine_table
from clothes_retrieval.data.sample import MANIFEST_NAME

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PROFILE = REPO / "configs" / "pipeline" / "sample.yaml"

# A few tiny photos per split; two defects per split (train: corrupt_image, malformed_json;
# validation: bad_box, unknown_category, in the generator's round-robin order).
TINY_SAMPLE = {
    "seed": 1,
    "groups": {"train": 1, "validation": 1},
    "max_products_per_group": 1,
    "consumer": {"long_side": 48, "photos_per_group_min": 1, "photos_per_group_max": 1},
    "shop": {"long_side": 48, "photos_per_style_max": 1},
    "defects": 2,
}


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """`sample-data` run once: (dataset root, exit code, stdout)."""
    tmp = tmp_path_factory.mktemp("cli")
    config = write_yaml(tmp / "sample.yaml", TINY_SAMPLE)
    out = tmp / "df2"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["sample-data", "--out", str(out), "--config", str(config)])
    return out, code, stdout.getvalue()


def manifest_of(root: Path) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text())


# ------------------------------------------------------------------------ sample-data


def test_sample_data_writes_the_dataset_and_prints_its_summary(sample):
    out, code, stdout = sample
    assert code == 0
    manifest = manifest_of(out)
    assert manifest["config"]["seed"] == 1 and manifest["config"]["groups"] == {
        "train": 1,
        "validation": 1,
    }
    summary = json.loads(stdout)
    assert summary["out_dir"] == str(out)
    for split in ("train", "validation"):
        annos = sorted((out / split / "annos").glob("*.json"))
        counts = summary["splits"][split]
        assert counts == manifest["splits"][split]["counts"]
        assert counts["images"] == len(annos) > 0 and counts["defects"] == 2
    assert sorted(d["kind"] for d in manifest["defects"]) == sorted(
        ["corrupt_image", "malformed_json", "bad_box", "unknown_category"]
    )


def test_sample_data_takes_a_profiles_sample_section_and_the_seed_option(tmp_path, capsys):
    profile = write_yaml(tmp_path / "p.yaml", {"name": "p", "sample": {**TINY_SAMPLE, "seed": 2}})
    out = tmp_path / "df2"
    assert main(["sample-data", "--out", str(out), "--config", str(profile), "--seed", "5"]) == 0
    config = manifest_of(out)["config"]
    assert config["seed"] == 5  # --seed wins over the file
    assert config["groups"] == TINY_SAMPLE["groups"] and config["defects"] == 2
    assert config["consumer"]["long_side"] == 48
    assert json.loads(capsys.readouterr().out)["out_dir"] == str(out)


@pytest.mark.parametrize(
    ("config", "extra", "messages"),
    [
        ({"sed": 1}, [], ["sed", "unknown key"]),
        ({"consumer": {"max_items": 4}}, [], ["consumer.max_items", "less than or equal to 3"]),
        ({}, ["--seed", "-1"], ["seed", "greater than or equal to 0"]),
        (None, [], ["config file not found", "absent.yaml"]),
        ("- a list", [], ["expected a mapping"]),
    ],
    ids=["unknown_key", "out_of_range", "negative_seed", "missing_file", "not_a_mapping"],
)
def test_sample_data_rejects_a_bad_config(tmp_path, capsys, config, extra, messages):
    path = tmp_path / "absent.yaml"
    if isinstance(config, str):
        path.write_text(config)
    elif config is not None:
        write_yaml(path, config)
    out = tmp_path / "df2"
    assert main(["sample-data", "--out", str(out), "--config", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for message in messages:
        assert message in err
    if config is not None:
        assert str(path) in err  # names the file
    assert not out.exists()  # nothing generated


def test_sample_data_dvc_track_outside_a_dvc_repo_is_a_user_error(tmp_path, capsys):
    config = write_yaml(tmp_path / "sample.yaml", TINY_SAMPLE)
    args = ["sample-data", "--out", str(tmp_path / "df2"), "--config", str(config)]
    code = main([*args, "--dvc-track", str(tmp_path / "df2"), "--dvc-repo", str(tmp_path)])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("error: ") and f"{tmp_path.resolve()} is not a DVC repository" in last


# ------------------------------------------------------------------------------ items


def test_items_writes_the_tables_and_lists_the_quarantine(sample, tmp_path, capsys):
    root, _, _ = sample
    tables = tmp_path / "tables"
    assert main(["items", "--root", str(root), "--out", str(tables)]) == 0
    out = capsys.readouterr().out.splitlines()
    items = read_item_table(tables / "items.parquet")
    quarantine = read_quarantine_table(tables / "quarantine.parquet")
    assert out[0] == f"{len(items)} items, 4 quarantined -> {tables / 'items.parquet'}"
    assert len(items) > 0 and set(items["split"]) == {"train", "validation"}
    defects = manifest_of(root)["defects"]
    rows = quarantine[["split", "image_id", "reason"]].itertuples(index=False, name=None)
    assert sorted(rows) == sorted((d["split"], d["image_id"], d["kind"]) for d in defects)
    listing = "\n".join(out[1:])  # the quarantine table, one line per record
    assert len(out) == 2 + len(defects)
    for reason in quarantine["reason"]:
        assert reason in listing


def test_items_reads_only_the_splits_asked_for(sample, tmp_path, capsys):
    root, _, _ = sample
    tables = tmp_path / "tables"
    assert main(["items", "--root", str(root), "--out", str(tables), "--splits", "validation"]) == 0
    items = read_item_table(tables / "items.parquet")
    quarantine = read_quarantine_table(tables / "quarantine.parquet")
    assert len(items) > 0 and set(items["split"]) == {"validation"}
    assert sorted(quarantine["reason"]) == ["bad_box", "unknown_category"]
    assert capsys.readouterr().out.startswith(f"{len(items)} items, 2 quarantined -> ")


@pytest.mark.parametrize(
    ("root", "splits", "messages"),
    [
        ("nowhere", [], ["split 'train'", "nowhere/train does not exist"]),
        (None, ["validation", "test"], ["split 'test'", "df2/test does not exist"]),
        (None, ["train", "train"], ["splits", "repeat a name"]),
    ],
    ids=["missing_root", "missing_split", "repeated_split"],
)
def test_items_rejects_a_missing_folder_or_bad_splits(
    sample, tmp_path, capsys, root, splits, messages
):
    root = tmp_path / root if root else sample[0]
    tables = tmp_path / "tables"
    args = ["items", "--root", str(root), "--out", str(tables)]
    assert main([*args, "--splits", *splits] if splits else args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for message in messages:
        assert message in err
    assert not tables.exists()  # no tables written


def test_usage_errors_exit_2_naming_the_argument(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["items", "--root", "x"])
    assert exc.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


# ----------------------------------------------------------------------- check-config


def test_check_config_prints_the_resolved_profile_with_overrides(capsys):
    args = ["check-config", str(SAMPLE_PROFILE), "--set", "sample.seed=7"]
    assert main([*args, "--set", "search.examples=3"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    as_written = yaml.safe_load(SAMPLE_PROFILE.read_text())
    assert resolved["name"] == "sample"
    assert resolved["sample"]["seed"] == 7 and resolved["search"]["examples"] == 3
    assert resolved["detection"]["detectors"] == as_written["detection"]["detectors"]
    assert resolved["retrieval"]["models"] == as_written["retrieval"]["models"]
    # Fully resolved: relative paths made absolute against the project, defaults filled in.
    assert resolved["output_root"] == str(REPO / "outputs")
    assert resolved["data"]["sources"]["deepfashion2"]["root"] == str(REPO / "data" / "sample")
    assert resolved["sample"]["groups"] == {"train": 40, "validation": 24}


@pytest.mark.parametrize(
    ("sets", "messages"),
    [
        (["sample.sed=1"], ["sample.sed", "unknown key"]),
        (["bogus=1"], ["bogus", "unknown key"]),
        (["sample.seed=-1"], ["sample.seed", "greater than or equal to 0"]),
        (["sample.seed"], ["--set 'sample.seed'", "use dotted.key=value"]),
        (["=1"], ["--set '=1'", "use dotted.key=value"]),
        (["sample.seed=[1"], ["--set 'sample.seed=[1'", "not YAML"]),
        (["sample=1", "sample.seed=2"], ["--set 'sample.seed=2'", "sample is set twice"]),
        (
            ["retrieval.models=[sample_lite0_gem, sample_lite0_gem_mac, m99]"],
            ["retrieval.models: no retrieval model ['m99']"],
        ),
        (["detection.detectors=[yolo]"], ["detection.detectors", "no detector 'yolo'"]),
    ],
    ids=[
        "unknown_nested_key",
        "unknown_top_key",
        "out_of_range",
        "no_equals",
        "no_key",
        "not_yaml",
        "set_twice",
        "unknown_model",
        "unknown_detector",
    ],
)
def test_check_config_rejects_a_bad_set(capsys, sets, messages):
    args = ["check-config", str(SAMPLE_PROFILE)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no profile printed
    assert captured.err.startswith("error: ")
    for message in messages:
        assert message in captured.err


def test_check_config_rejects_a_missing_or_bad_profile_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["check-config", str(missing)]) == 2
    assert f"error: config file not found: {missing}" in capsys.readouterr().err

    bad = write_yaml(tmp_path / "bad.yaml", {**yaml.safe_load(SAMPLE_PROFILE.read_text()),
                                              "serach": {}})  # fmt: skip
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"invalid config in {bad}" in err and "serach: unknown key" in err


def test_the_installed_entry_point_returns_the_exit_code(sample, tmp_path):
    exe = Path(sys.executable).with_name("clothes-retrieval")
    missing = tmp_path / "nope.yaml"
    bad = subprocess.run(
        [str(exe), "check-config", str(missing)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2, bad.stderr
    assert f"error: config file not found: {missing}" in bad.stderr
    tables = tmp_path / "tables"
    args = ["items", "--root", str(sample[0]), "--out", str(tables), "--splits", "validation"]
    good = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith(f"{len(read_item_table(tables / 'items.parquet'))} items, ")

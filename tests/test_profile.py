"""Pipeline profiles: sources and roles, the query/training separation, tuning profiles,
`--set` overrides and the entries a profile names, all checked when it loads."""

from pathlib import Path

import pytest
import yaml

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.profile import (
    PipelineProfile,
    load_profile,
    parse_overrides,
    shared_data_root,
)

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "configs" / "pipeline"


def _profile(sources: dict, **extra) -> dict:
    return {"name": "p", "data": {"sources": sources}, **extra}


CCP = {"source": "ccp", "root": "ccp"}


def test_sources_validate_resolve_and_expand_the_shared_root(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLOTHES_RETRIEVAL_SHARED_DATA", str(tmp_path / "shared"))
    profile = validate_config(
        PipelineProfile,
        _profile(
            {
                "s2s": {"source": "street2shop", "root": "extra/s2s", "role": "training"},
                "q": {"source": "ccp", "root": "${shared_data}/ccp", "role": "queries"},
            }
        ),
    ).resolved(tmp_path)
    assert profile.data.sources["s2s"].root == (tmp_path / "extra" / "s2s").resolve()
    assert profile.data.sources["q"].root == tmp_path / "shared" / "ccp"
    monkeypatch.delenv("CLOTHES_RETRIEVAL_SHARED_DATA")
    assert shared_data_root(tmp_path) == tmp_path.parent / "shared" / "data"


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ({"a": {"source": "flickr", "root": "x"}}, "unknown source 'flickr'"),
        ({"a": {"source": "darn", "root": "x", "splitz": ["train"]}}, "splitz"),
        ({"a": {"source": "darn", "root": "x", "role": "judge"}}, "role"),
        ({"a": {"source": "darn", "root": "x", "photos": [1, 5]}}, "not numbered"),
        ({"a": {**CCP, "photos": [5, 1]}}, "empty"),
        ({"a": {**CCP, "options": {"split": "x"}}}, "set by the profile"),
        # query photos that a training source also reads
        (
            {
                "t": {**CCP, "role": "training", "photos": [1, 300]},
                "q": {**CCP, "role": "queries", "photos": [300, 500]},
            },
            "never be trained on",
        ),
        ({"q": {**CCP, "role": "queries"}}, "no source has a training role"),
    ],
)
def test_bad_sources_are_named(sources: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(PipelineProfile, _profile(sources))


def test_disjoint_photo_ranges_of_one_folder_are_allowed() -> None:
    validate_config(
        PipelineProfile,
        _profile(
            {
                "t": {**CCP, "role": "training", "photos": [1, 300]},
                "q": {**CCP, "role": "queries", "photos": [301, 500]},
            }
        ),
    )


@pytest.mark.parametrize(
    "name", ["sample", "real", "real_tuning", "deepfashion2", "deepfashion2_smoke"]
)
def test_shipped_profiles_load(name: str) -> None:
    profile = load_profile(PROFILES / f"{name}.yaml")
    assert profile.name == name


def test_tuning_profile_inherits_and_keeps_to_the_training_photos(tmp_path: Path) -> None:
    tuning = load_profile(PROFILES / "real_tuning.yaml")
    real = load_profile(PROFILES / "real.yaml")
    assert tuning.tuning_of == PROFILES / "real.yaml"
    assert tuning.output_dir != real.output_dir
    assert tuning.data.sources["street_queries"].photos == (201, 300)
    assert tuning.retrieval.models == real.retrieval.models  # inherited
    assert tuning.search.box_sources == ("gt",)
    # queries outside real.yaml's training photos (1-300): refused, naming the source
    with pytest.raises(ConfigError, match="street_queries.*not inside the training photos"):
        load_profile(
            PROFILES / "real_tuning.yaml",
            parse_overrides(["data.sources.street_queries.photos=[290, 310]"]),
        )
    bad = tmp_path / "configs" / "t.yaml"
    bad.parent.mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    bad.write_text(yaml.safe_dump({"name": "t", "tuning_of": "configs/nope.yaml"}))
    with pytest.raises(ConfigError, match="no profile"):
        load_profile(bad)


def test_overrides_parse_as_yaml_and_bad_keys_are_named() -> None:
    assert parse_overrides(["a.b=1", "a.c=[x, y]", "d=null"]) == {
        "a": {"b": 1, "c": ["x", "y"]},
        "d": None,
    }
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_overrides(["nonsense"])
    sample = PROFILES / "sample.yaml"
    profile = load_profile(sample, parse_overrides(["search.examples=3"]))
    assert profile.search.examples == 3
    with pytest.raises(ConfigError, match="search.exampels"):
        load_profile(sample, parse_overrides(["search.exampels=3"]))


def test_named_models_and_detectors_resolve_when_the_profile_loads(tmp_path: Path) -> None:
    own = tmp_path / "p.yaml"
    own.write_text(
        yaml.safe_dump(
            _profile(
                {"d": {"source": "deepfashion2", "root": "data"}},
                retrieval={"registry": str(REPO / "configs" / "retrieval"), "models": ["nope"]},
            )
        )
    )
    with pytest.raises(ConfigError, match=r"retrieval.models: no retrieval model \['nope'\]"):
        load_profile(own)
    sample = PROFILES / "sample.yaml"
    with pytest.raises(ConfigError, match="train.epochs"):
        load_profile(sample, parse_overrides(["retrieval.overrides={train: {epochs: 0}}"]))
    with pytest.raises(ConfigError, match="no detector 'yolo'"):
        load_profile(sample, parse_overrides(["detection.detectors=[yolo]"]))
    with pytest.raises(ConfigError, match="has no 'real' profile"):
        load_profile(sample, parse_overrides(["detection.profile=real"]))
    with pytest.raises(ConfigError, match=r"search.ensembles.both: \['m9'\] are not in"):
        load_profile(sample, parse_overrides(["search.ensembles={both: {models: [m9]}}"]))
    with pytest.raises(ConfigError, match="evaluation.headline"):
        load_profile(sample, parse_overrides(["evaluation.headline=m99"]))
    with pytest.raises(ConfigError, match=r"trains on \['street2shop'\], which no data source"):
        load_profile(own, parse_overrides(["retrieval.models=[m1]"]))


def test_the_paper_profile_has_every_stage_at_paper_size() -> None:
    profile = load_profile(PROFILES / "deepfashion2.yaml")
    det, ret, search = profile.detection, profile.retrieval, profile.search
    assert det.detectors[0] == "atss" and len(det.detectors) == 5 and det.profile == "paper"
    assert det.fusion_config().detectors[0] == "atss"
    assert ret.models == tuple(f"m{i}" for i in range(18))
    assert len(search.ensembles) == 8 and "m1-16" in search.ensembles
    assert search.ensembles["m0-13 w/o m6-9"].models == (
        "m0", "m1", "m2", "m3", "m4", "m5", "m10", "m11", "m12", "m13")  # fmt: skip
    assert search.publish.name == "m1-16" and search.publish.box_source == "fused"
    assert {"k-reciprocal re-ranking", "pca whitening"} <= set(search.postprocess)
    assert profile.evaluation.test_split == "test"
    assert det.world_size == ret.world_size == 8


def test_extends_merges_over_one_base_and_delete_replaces_a_mapping(tmp_path: Path) -> None:
    smoke = load_profile(PROFILES / "deepfashion2_smoke.yaml")
    assert smoke.name == "deepfashion2_smoke"
    assert list(smoke.data.sources) == ["deepfashion2"]  # _delete_: the base's six replaced
    assert smoke.detection.detectors[0] == "atss" and smoke.detection.profile == "paper"
    assert list(smoke.search.postprocess) == list(
        load_profile(PROFILES / "deepfashion2.yaml").search.postprocess
    )  # inherited
    assert list(smoke.search.ensembles) == ["m0+m11"]
    chained = tmp_path / "chained.yaml"
    chained.write_text(f"extends: {PROFILES / 'deepfashion2_smoke.yaml'}\nname: c\n")
    with pytest.raises(ConfigError, match="one base only"):
        load_profile(chained)
    absent = tmp_path / "absent.yaml"
    absent.write_text("extends: nowhere.yaml\nname: a\n")
    with pytest.raises(ConfigError, match="extends: no profile at"):
        load_profile(absent)


def test_check_config_shows_every_stage_of_the_paper_profile(capsys) -> None:
    from clothes_retrieval.cli import main

    assert main(["check-config", str(PROFILES / "deepfashion2.yaml")]) == 0
    shown = capsys.readouterr().err
    for stage in ("data", "crops", "detection", "fusion", "retrieval", "weights", "search",
                  "postprocess", "publish", "evaluation"):  # fmt: skip
        assert f"\n  {stage} " in shown, stage
    for name in ("atss", "cascade_mask_rcnn", "centernet", "retinanet_r101", "retinanet_x101"):
        assert f"    {name} " in shown
    assert "resnext101_64x4d   1333x800" in shown
    assert all(f"    m{i} " in shown for i in range(18))
    assert "seresnext101_32x4d" in shown and "gem+mac 1024-d" in shown
    assert "4 file(s), 4 missing" in shown
    assert "and the test split" in shown

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


@pytest.mark.parametrize("name", ["sample", "real", "real_tuning", "deepfashion2"])
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

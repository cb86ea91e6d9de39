"""The pipeline profile's extra training sources (data.training_sources)."""

from pathlib import Path

import pytest

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.profile import PipelineProfile

BASE = {"name": "p", "data": {"root": "data/sample"}}


def _with_sources(sources: list) -> dict:
    return {**BASE, "data": {**BASE["data"], "training_sources": sources}}


def test_training_sources_validate_and_resolve(tmp_path: Path) -> None:
    profile = validate_config(
        PipelineProfile, _with_sources([{"source": "street2shop", "root": "extra/s2s"}])
    )
    (spec,) = profile.data.training_sources
    assert (spec.splits, spec.taxonomy) == (("train",), "deepfashion2")
    resolved = profile.resolved(tmp_path)
    assert resolved.data.training_sources[0].root == (tmp_path / "extra" / "s2s").resolve()


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([{"source": "flickr", "root": "x"}], "unknown source 'flickr'"),
        ([{"source": "darn", "root": "x"}, {"source": "darn", "root": "y"}], "listed twice"),
        ([{"source": "deepfashion2", "root": "x"}], "main dataset"),
        ([{"source": "darn", "root": "x", "splitz": ["train"]}], "splitz"),
    ],
)
def test_bad_training_sources_are_named(sources: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(PipelineProfile, _with_sources(sources))

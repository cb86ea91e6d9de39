from pathlib import Path

import pytest
from pydantic import ValidationError

from clothes_retrieval.config import ConfigError, FrozenConfig, load_config, validate_config


class Inner(FrozenConfig):
    size: int = 3


class Outer(FrozenConfig):
    name: str
    inner: Inner = Inner()


def test_valid_config_is_frozen():
    cfg = validate_config(Outer, {"name": "x", "inner": {"size": 5}})
    assert cfg.inner.size == 5
    with pytest.raises(ValidationError):
        cfg.name = "y"  # type: ignore[misc]


def test_unknown_key_is_named_with_its_path(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ninner:\n  sise: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    assert "inner.sise" in str(err.value)
    assert "unknown key" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"inner\.size"):
        validate_config(Outer, {"name": "x", "inner": {"size": "many"}})


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)

"""Every artifact records its data version; a step refuses inputs of different versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from clothes_retrieval.versioning import (
    DataVersionMismatch,
    combine_versions,
    common_data_version,
    read_lineage,
    write_lineage,
)


def test_common_version_and_the_mismatch_names_each_side(tmp_path: Path) -> None:
    for name, version in (("a", "v1"), ("b", "v1"), ("c", "v2")):
        write_lineage(tmp_path / name, version, {"src": version})
    assert read_lineage(tmp_path / "a") == "v1"
    assert common_data_version({"a": tmp_path / "a", "b": tmp_path / "b"}) == "v1"
    with pytest.raises(DataVersionMismatch) as err:
        common_data_version({"a": tmp_path / "a", "b": tmp_path / "b", "c": tmp_path / "c"})
    assert "v1: a, b" in str(err.value) and "v2: c" in str(err.value)
    with pytest.raises(FileNotFoundError, match="records no data version"):
        read_lineage(tmp_path / "never-built")


def test_combined_versions_are_stable_and_change_with_any_source() -> None:
    assert combine_versions({"only": "abc"}) == "abc"
    two = combine_versions({"x": "1", "y": "2"})
    assert two == combine_versions({"y": "2", "x": "1"})  # order does not matter
    assert two != combine_versions({"x": "1", "y": "3"})
    assert two.startswith("dv-")

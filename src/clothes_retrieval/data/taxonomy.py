"""Taxonomies: a target class list and, per source, which of its categories map to each class.

Every source keeps its own category set in its item table; a taxonomy file in
``configs/taxonomy/<name>.yaml`` says how to see several sources through one class list::

    name: product10
    classes: [dress, hat, ...]          # target classes, ids 1..K in this order
    sources:
      ccp:                              # a registered source (its dataset name)
        dress: [dress]                  # target class: [source category names]
        longsleeve: [sweater, cardigan, sweatshirt, hoodie, jumper]

A source category listed under no class is not part of the taxonomy: its items are dropped
(and counted), e.g. CCP's ``bag`` or ``belt`` for product10. Mapping is data, never code in
an adapter: to map a new source, add a ``sources.<name>`` block.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from pydantic import Field, model_validator

from clothes_retrieval.config import ConfigError, FrozenConfig, load_yaml, validate_config

__all__ = ["DEFAULT_TAXONOMY_DIR", "Taxonomy", "load_taxonomy", "map_to_taxonomy"]

log = logging.getLogger(__name__)

DEFAULT_TAXONOMY_DIR = Path(__file__).resolve().parents[3] / "configs" / "taxonomy"


class Taxonomy(FrozenConfig):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    classes: tuple[str, ...]
    sources: dict[str, dict[str, tuple[str, ...]]]

    @model_validator(mode="after")
    def _check(self) -> Taxonomy:
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: give distinct names, got {list(self.classes)}")
        for source, mapping in self.sources.items():
            unknown = sorted(set(mapping) - set(self.classes))
            if unknown:
                raise ValueError(
                    f"sources.{source}: {unknown} are not classes of this taxonomy "
                    f"({list(self.classes)})"
                )
            seen: dict[str, str] = {}
            for target, names in mapping.items():
                for name in names:
                    if name in seen and seen[name] != target:
                        raise ValueError(
                            f"sources.{source}: category {name!r} is mapped to both "
                            f"{seen[name]!r} and {target!r}"
                        )
                    seen[name] = target
        return self

    @property
    def category_ids(self) -> dict[int, str]:
        return {k + 1: name for k, name in enumerate(self.classes)}

    def lookup(self, source: str) -> dict[str, str]:
        """Source category name -> target class, for ``source``."""
        if source not in self.sources:
            raise ConfigError(
                f"taxonomy {self.name!r} has no mapping for source {source!r}: add "
                f"sources.{source} to configs/taxonomy/{self.name}.yaml "
                f"(mapped now: {sorted(self.sources)})"
            )
        return {name: target for target, names in self.sources[source].items() for name in names}


def load_taxonomy(
    name_or_path: str | Path, directory: str | Path = DEFAULT_TAXONOMY_DIR
) -> Taxonomy:
    """A taxonomy by name (``configs/taxonomy/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(directory) / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in Path(directory).glob("*.yaml"))
            raise ConfigError(f"no taxonomy {name_or_path!r} in {directory}; known: {known}")
    return validate_config(Taxonomy, load_yaml(path), source=str(path))


def map_to_taxonomy(
    items: pd.DataFrame, taxonomy: Taxonomy, *, source: str | None = None
) -> pd.DataFrame:
    """``items`` seen through ``taxonomy``: ``category_id``/``category_name`` become the
    target class (ids 1..K), rows of unmapped categories are dropped (counted in the log).

    ``source``: the taxonomy block to use; by default each row's ``dataset``.
    """
    if items.empty:
        return items.copy()
    sources = [source] if source is not None else sorted(items["dataset"].astype(str).unique())
    ids = {name: cid for cid, name in taxonomy.category_ids.items()}
    parts = []
    for src in sources:
        part = items if source is not None else items[items["dataset"] == src]
        lookup = taxonomy.lookup(src)
        target = part["category_name"].astype(str).map(lookup)
        kept = part[target.notna()].copy()
        dropped = part.loc[target.isna(), "category_name"].value_counts()
        if len(dropped):
            log.info(
                "%s -> %s: %d items of unmapped categories dropped (%s)",
                src,
                taxonomy.name,
                int(dropped.sum()),
                ", ".join(f"{k} {v}" for k, v in dropped.head(8).items()),
            )
        kept["category_name"] = target[target.notna()].astype("string")
        kept["category_id"] = kept["category_name"].map(ids).astype("int64")
        parts.append(kept)
    return pd.concat(parts).reset_index(drop=True)

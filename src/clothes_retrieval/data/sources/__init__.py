"""Source adapters: each dataset's native layout -> the item and quarantine tables.

Registered sources (``SOURCES``): ``deepfashion2``, ``ccp`` (Clothing Co-Parsing),
``product_folders`` (product photos sorted by class), and the paper's other training sets
(Table 1): ``street2shop``, ``darn``, ``mvc``, ``mpv``, ``zalando``. Read one with
:func:`read_source`; map its categories to a shared taxonomy with
:func:`clothes_retrieval.data.taxonomy.map_to_taxonomy`.
"""

from clothes_retrieval.data.sources import (  # noqa: F401
    ccp,
    darn,
    deepfashion2,
    mpv,
    mvc,
    product_folders,
    street2shop,
    zalando,
)
from clothes_retrieval.data.sources.base import (
    SOURCES,
    Rejected,
    SourceSpec,
    SourceTables,
    TableBuilder,
    image_size,
    read_source,
    register_source,
)
from clothes_retrieval.data.sources.combine import SourceConfig, read_sources

__all__ = [
    "SOURCES",
    "Rejected",
    "SourceSpec",
    "SourceTables",
    "TableBuilder",
    "image_size",
    "read_source",
    "SourceConfig",
    "read_sources",
    "register_source",
]

"""Data versioning: each source's DVC hash (else a fingerprint) is its data version, and every
artifact records the version it was built from (:mod:`clothes_retrieval.versioning.lineage`)."""

from clothes_retrieval.versioning.dvc import (
    DvcError,
    data_version,
    dvc_add,
    fingerprint_folder,
    read_dvc_hash,
)
from clothes_retrieval.versioning.lineage import (
    LINEAGE_FILE,
    DataVersionMismatch,
    combine_versions,
    common_data_version,
    read_lineage,
    source_versions,
    write_lineage,
)

__all__ = [
    "LINEAGE_FILE",
    "DataVersionMismatch",
    "DvcError",
    "combine_versions",
    "common_data_version",
    "data_version",
    "dvc_add",
    "fingerprint_folder",
    "read_dvc_hash",
    "read_lineage",
    "source_versions",
    "write_lineage",
]

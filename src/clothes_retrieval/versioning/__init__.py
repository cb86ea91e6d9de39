"""Data versioning: the DVC hash of the data root is the data version of everything downstream."""

from clothes_retrieval.versioning.dvc import (
    DvcError,
    data_version,
    dvc_add,
    fingerprint_folder,
    read_dvc_hash,
)

__all__ = ["DvcError", "data_version", "dvc_add", "fingerprint_folder", "read_dvc_hash"]

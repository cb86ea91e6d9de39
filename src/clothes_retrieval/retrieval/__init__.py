"""Retrieval model: timm backbone + CGD head (GeM/MAC/SPoC), metric-learning losses,
training on a crops table (single process or DDP), and embedding of crops.

Public surface: ``build_model``, ``train_retrieval_model``, ``embed_crops``,
``load_trained_model``, ``load_registry`` / ``get_model_config`` and the config classes.
"""

from clothes_retrieval.retrieval.config import (
    DEFAULT_REGISTRY_DIR,
    RetrievalModelConfig,
    get_model_config,
    load_registry,
)
from clothes_retrieval.retrieval.data import ImageReadError
from clothes_retrieval.retrieval.embed import embed_crops, load_trained_model
from clothes_retrieval.retrieval.head import CGDHead
from clothes_retrieval.retrieval.model import (
    RetrievalModel,
    build_model,
    create_eval_transform,
    create_train_transform,
)
from clothes_retrieval.retrieval.pooling import MAC, GeM, SPoC, gem, mac, spoc
from clothes_retrieval.retrieval.train import TrainResult, train_retrieval_model

__all__ = [
    "CGDHead",
    "DEFAULT_REGISTRY_DIR",
    "GeM",
    "ImageReadError",
    "MAC",
    "RetrievalModel",
    "RetrievalModelConfig",
    "SPoC",
    "TrainResult",
    "build_model",
    "create_eval_transform",
    "create_train_transform",
    "embed_crops",
    "gem",
    "get_model_config",
    "load_registry",
    "load_trained_model",
    "mac",
    "spoc",
    "train_retrieval_model",
]

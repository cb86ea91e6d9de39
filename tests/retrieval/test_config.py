import pytest

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.retrieval.config import (
    DEFAULT_REGISTRY_DIR,
    RetrievalModelConfig,
    get_model_config,
    load_registry,
)

REGISTRY = load_registry()


def test_defaults_are_the_papers_table_4():
    c = RetrievalModelConfig()
    assert (c.model.backbone, c.model.input_size, c.model.descriptors, c.model.dim) == (
        "resnet152d", (224, 224), ("gem",), 1024)  # fmt: skip
    assert (c.train.epochs, c.optim.name, c.optim.lr, c.optim.cosine_decay) == (
        200,
        "sgd",
        0.2,
        True,
    )
    assert all(w > 0 for w in (c.loss.softmax.weight, c.loss.center.weight,
                                c.loss.triplet.weight, c.loss.multi_similarity.weight))  # fmt: skip


def test_registry_has_m0_to_m17_and_sample_profiles():
    assert {f"m{i}" for i in range(18)} <= set(REGISTRY)
    assert {"sample_lite0_gem", "sample_lite0_gem_mac"} <= set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_builds_its_head(name):
    """Each entry validates and its CGD head is consistent (the backbone is not built: paper
    backbones are large)."""
    from clothes_retrieval.retrieval.head import CGDHead

    cfg = REGISTRY[name]
    assert cfg.name == name
    head = CGDHead(32, cfg.model.descriptors, cfg.model.dim, 3)
    assert head.dim == cfg.model.dim


def test_registry_details():
    assert REGISTRY["m11"].model.descriptors == ("gem", "mac")
    assert REGISTRY["m17"].model.descriptors == ("gem", "spoc")
    assert REGISTRY["m12"].optim.lr == REGISTRY["m15"].optim.lr == 0.17
    assert REGISTRY["m9"].model.backbone == "seresnext101_32x4d"
    assert REGISTRY["m10"].model.input_size == (224, 384)
    assert REGISTRY["m6"].data.training_sources == (
        "deepfashion2", "street2shop", "darn", "mvc", "mpv", "zalando")  # fmt: skip
    assert REGISTRY["m7"].data.train_splits == ("train", "validation")
    assert REGISTRY["sample_lite0_gem"].model.weights == "efficientnet_lite"
    assert get_model_config("m4") == REGISTRY["m4"]


def test_bad_key_is_named():
    with pytest.raises(ConfigError, match=r"optim\.lrate: unknown key"):
        validate_config(RetrievalModelConfig, {"optim": {"lrate": 0.1}})
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        validate_config(RetrievalModelConfig, {"train": {"epochs": 0}})
    with pytest.raises(ConfigError, match="m_per_class"):
        validate_config(RetrievalModelConfig, {"train": {"batch_size": 10, "m_per_class": 4}})


def test_registry_errors_name_file_and_key(tmp_path):
    (tmp_path / "a.yaml").write_text("models:\n  x1:\n    model: {descriptors: [gem, avg]}\n")
    with pytest.raises(ConfigError) as err:
        load_registry(tmp_path)
    assert "a.yaml" in str(err.value) and "models.x1.model.descriptors.1" in str(err.value)
    (tmp_path / "a.yaml").write_text("models:\n  m0: {}\n")
    (tmp_path / "b.yaml").write_text("models:\n  m0: {}\n")
    with pytest.raises(ConfigError, match="both"):
        load_registry(tmp_path)


def test_registry_dir_is_the_repo_configs():
    assert (
        DEFAULT_REGISTRY_DIR.name == "retrieval" and (DEFAULT_REGISTRY_DIR / "paper.yaml").is_file()
    )

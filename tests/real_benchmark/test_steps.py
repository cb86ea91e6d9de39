"""Unit tests of the real benchmark's protocol pieces (no real data needed)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.real_benchmark import (
    RealBenchmarkConfig,
    category_accuracy,
    headline_line,
    match_detections,
)
from clothes_retrieval.real_benchmark.config import load_benchmark_config


def _slow_accuracy(ranked, labels, k, valid=None):
    hits = 0
    for q in range(len(labels)):
        if valid is not None and not valid[q]:
            continue
        if any(ranked[q][j] == labels[q] for j in range(min(k, len(ranked[q])))):
            hits += 1
    return hits / len(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_category_accuracy_matches_a_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ranked = rng.integers(-1, 5, size=(40, 12))
    labels = rng.integers(1, 5, size=40)
    valid = rng.random(40) > 0.3
    ks = (1, 5, 10, 20)
    got = category_accuracy(ranked, labels, ks)
    got_valid = category_accuracy(ranked, labels, ks, valid)
    for k in ks:
        assert got[k] == pytest.approx(_slow_accuracy(ranked, labels, k))
        assert got_valid[k] == pytest.approx(_slow_accuracy(ranked, labels, k, valid))
    assert got[1] <= got[5] <= got[10] <= got[20]


def test_category_accuracy_rejects_no_queries() -> None:
    with pytest.raises(ValueError, match="no queries"):
        category_accuracy(np.zeros((0, 3)), np.zeros(0), (1,))


def test_match_detections_takes_the_best_scored_box_above_the_iou() -> None:
    queries = pd.DataFrame(
        {
            "image_path": ["a.jpg", "a.jpg", "b.jpg", "c.jpg"],
            "x1": [0.0, 50.0, 0.0, 0.0],
            "y1": [0.0, 50.0, 0.0, 0.0],
            "x2": [10.0, 60.0, 10.0, 10.0],
            "y2": [10.0, 60.0, 10.0, 10.0],
        },
        index=[10, 11, 12, 13],
    )
    boxes = pd.DataFrame(
        {
            "image_path": ["a.jpg", "a.jpg", "a.jpg", "b.jpg"],
            "x1": [0.0, 1.0, 50.0, 5.0],
            "y1": [0.0, 0.0, 50.0, 5.0],
            "x2": [10.0, 10.0, 59.0, 15.0],
            "y2": [10.0, 10.0, 60.0, 15.0],
            "score": [0.3, 0.9, 0.5, 0.99],
        }
    )
    m = match_detections(queries, boxes, 0.5)
    assert list(m.index) == [10, 11, 12, 13]
    # query 10: both a.jpg boxes overlap; the higher score (0.9) answers, not the exact box
    assert m.loc[10, "score"] == 0.9 and m.loc[10, "x1"] == 1.0
    assert m.loc[11, "score"] == 0.5 and m.loc[11, "iou"] == pytest.approx(0.9)
    # b.jpg's box has IoU 25/175 < 0.5: no match; c.jpg has no boxes at all
    assert m.loc[[12, 13], "x1"].isna().all()


def test_headline_line_format() -> None:
    line = headline_line(
        {"gt": {"acc@1": 0.7, "acc@10": 0.95}, "detected": {"acc@1": 0.6, "acc@10": 0.9}}
    )
    assert re.fullmatch(
        r"real benchmark: gt acc@1 \d\.\d{3} acc@10 \d\.\d{3}, "
        r"detected acc@1 \d\.\d{3} acc@10 \d\.\d{3}",
        line,
    )
    assert "gt acc@1 0.700 acc@10 0.950" in line and "acc@1 0.600 acc@10 0.900" in line
    assert "detected acc@1 n/a" in headline_line({"gt": {"acc@1": 0.5, "acc@10": 0.9}})


def test_overlapping_street_split_is_refused() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        validate_config(
            RealBenchmarkConfig, {"street_split": {"train": [1, 300], "queries": [300, 500]}}
        )


def test_tuning_runs_inside_the_training_part_only(tmp_path) -> None:
    config = load_benchmark_config()
    tuning = config.for_tuning()
    assert config.street_split.train == (1, 300) and config.street_split.queries == (301, 500)
    # default: the training part cut at two thirds; the query photos 301-500 are not used
    assert tuning.street_split.train == (1, 200) and tuning.street_split.queries == (201, 300)
    assert tuning.tuning and tuning.output_dir == config.tuning_output_dir != config.output_dir
    assert tuning.for_tuning() == tuning
    # separate street folders: the tuning queries come from the street *training* folder
    split = validate_config(
        RealBenchmarkConfig,
        {"street_train": str(tmp_path / "train"), "street_queries": str(tmp_path / "held_out")},
    ).for_tuning()
    assert split.roots()["street_queries"] == tmp_path / "train" == split.roots()["street_train"]
    given = validate_config(
        RealBenchmarkConfig, {"tuning_split": {"train": [1, 250], "queries": [251, 300]}}
    )
    assert given.for_tuning().street_split.queries == (251, 300)
    with pytest.raises(ConfigError, match="tuning_split.queries.*not inside"):
        validate_config(
            RealBenchmarkConfig, {"tuning_split": {"train": [1, 250], "queries": [251, 320]}}
        )
    with pytest.raises(ValueError, match="too few photos"):
        validate_config(
            RealBenchmarkConfig, {"street_split": {"train": [1, 1], "queries": [2, 5]}}
        ).for_tuning()


def test_bad_keys_and_headline_are_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match="detection.detecters"):
        validate_config(RealBenchmarkConfig, {"detection": {"detecters": ["atss"]}})
    with pytest.raises(ConfigError, match="headline"):
        validate_config(RealBenchmarkConfig, {"retrieval": {"headline": "m99"}})
    with pytest.raises(ConfigError, match="ks"):
        validate_config(RealBenchmarkConfig, {"ks": [1, 5]})
    with pytest.raises(ConfigError, match="retrieval.postprocess.dba.k"):
        validate_config(RealBenchmarkConfig, {"retrieval": {"postprocess": {"dba": {"k": 0}}}})


def test_default_config_loads_and_roots_follow_the_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLOTHES_RETRIEVAL_SHARED_DATA", str(tmp_path))
    config = load_benchmark_config(overrides={"products": str(tmp_path / "mine")})
    roots = config.roots()
    assert roots["street_train"] == tmp_path / "ccp" == roots["street_queries"]
    assert roots["products"] == tmp_path / "mine"
    assert len(config.missing_roots()) == 3
    assert config.detection.fusion_config().detectors == list(config.detection.detectors)


def test_registry_entries_are_resolved_when_the_config_loads(tmp_path, capsys) -> None:
    from clothes_retrieval.cli import main

    load_benchmark_config()  # the shipped config names real entries
    with pytest.raises(ConfigError, match=r"retrieval.fine_tuned: .*'real_lite9_mixed'"):
        load_benchmark_config(
            overrides={"retrieval": {"fine_tuned": ["real_lite1_mixed_e8", "real_lite9_mixed"]}}
        )
    zero_shot = tmp_path / "zero_shot.yaml"
    zero_shot.write_text(
        "retrieval: {zero_shot: real_lite9_zero_shot, headline: real_lite9_zero_shot,"
        " fine_tuned: []}\n"
    )
    with pytest.raises(ConfigError, match="retrieval.zero_shot: .*'real_lite9_zero_shot'"):
        load_benchmark_config(zero_shot)
    with pytest.raises(ConfigError, match="train.epochs"):
        load_benchmark_config(overrides={"retrieval": {"overrides": {"train": {"epochs": 0}}}})
    # the CLI names it and stops before any step: nothing written, no detector trained
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: {fine_tuned: [real_lite9_mixed], headline: real_lite9_mixed}\n")
    out = tmp_path / "out"
    assert main(["real-benchmark", "--config", str(bad), "--out", str(out)]) == 2
    assert "real_lite9_mixed" in capsys.readouterr().err
    assert not out.exists()


def test_ensembles_are_validated() -> None:
    ok = validate_config(
        RealBenchmarkConfig,
        {
            "retrieval": {
                "ensembles": {"both": {"models": ["real_lite0_zero_shot", "real_lite0_mixed"]}},
                "headline": "both",
            }
        },
    )
    assert ok.retrieval.headline == "both"
    with pytest.raises(ConfigError, match="neither zero_shot nor fine_tuned"):
        validate_config(
            RealBenchmarkConfig,
            {"retrieval": {"ensembles": {"x": {"models": ["real_lite0_zero_shot", "m3"]}}}},
        )
    with pytest.raises(ConfigError, match="weights"):
        validate_config(
            RealBenchmarkConfig,
            {
                "retrieval": {
                    "ensembles": {
                        "x": {
                            "models": ["real_lite0_zero_shot", "real_lite0_mixed"],
                            "weights": [1],
                        }
                    }
                }
            },
        )


def test_ensemble_embedding_is_the_weighted_concatenation(tmp_path) -> None:
    from PIL import Image

    from clothes_retrieval.real_benchmark.steps import embed_items
    from clothes_retrieval.retrieval.config import ModelConfig
    from clothes_retrieval.retrieval.embed import embed_crops
    from clothes_retrieval.retrieval.model import build_pooled_backbone

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    items = [(p, None) for p in paths]
    a = build_pooled_backbone(
        ModelConfig(backbone="test_efficientnet", descriptors=("spoc",), input_size=(32, 32))
    )
    b = build_pooled_backbone(
        ModelConfig(backbone="test_efficientnet", descriptors=("mac",), input_size=(48, 48))
    )
    got = embed_items([(a, 1.0), (b, 2.0)], items, 2, False)
    ea, eb = (embed_crops(m, items, progress=False) for m in (a, b))
    want = np.concatenate([ea, 2.0 * eb], axis=1)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed_items(a, items, 2, False), ea, atol=1e-5)


def test_evaluate_model_searches_with_the_configured_postprocessing(tmp_path) -> None:
    """retrieval.postprocess reaches the search: the ranking equals rank_gallery's with it."""
    from PIL import Image

    from clothes_retrieval.data.taxonomy import load_taxonomy
    from clothes_retrieval.real_benchmark.steps import BenchmarkData, evaluate_model
    from clothes_retrieval.retrieval.config import ModelConfig
    from clothes_retrieval.retrieval.embed import embed_crops
    from clothes_retrieval.retrieval.model import build_pooled_backbone
    from clothes_retrieval.search.rank import PostprocessConfig, rank_gallery

    taxonomy = load_taxonomy("product10")
    rng = np.random.default_rng(1)
    ids = list(taxonomy.category_ids.items())[:3]

    def photos(prefix: str, n: int) -> pd.DataFrame:
        rows = []
        for i in range(n):
            path = tmp_path / f"{prefix}{i}.jpg"
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)
            cid, name = ids[i % len(ids)]
            rows.append(
                {
                    "image_path": str(path),
                    "x1": 2.0,
                    "y1": 3.0,
                    "x2": 28.0,
                    "y2": 37.0,
                    "category_id": cid,
                    "category_name": name,
                    "item_uid": f"{prefix}{i}",
                    "split": "validation",
                }
            )
        return pd.DataFrame(rows)

    queries, gallery = photos("q", 6), photos("g", 9)
    data = BenchmarkData(
        street_train=queries.iloc[:0],
        queries=queries,
        products=gallery,
        quarantine=pd.DataFrame(),
        taxonomy=taxonomy,
        out_dir=tmp_path,
    )
    model = build_pooled_backbone(
        ModelConfig(backbone="test_efficientnet", descriptors=("spoc",), input_size=(32, 32))
    )
    post = {"dba": {"enabled": True, "k": 3}, "query_expansion": {"enabled": True, "k": 2}}
    config = validate_config(
        RealBenchmarkConfig, {"retrieval": {"postprocess": post}, "ks": [1, 5, 10]}
    )
    evaluate_model("m", model, data, None, config, tmp_path / "eval", progress=False)
    ranked = pd.read_parquet(tmp_path / "eval" / "ranked.parquet")

    q = embed_crops(
        model, [(p, (2.0, 3.0, 28.0, 37.0)) for p in queries["image_path"]], progress=False
    )
    g = embed_crops(model, [(p, None) for p in gallery["image_path"]], progress=False)
    want, _ = rank_gallery(q, g, validate_config(PostprocessConfig, post), k=10)
    plain, _ = rank_gallery(q, g, k=10)
    np.testing.assert_array_equal(np.stack(ranked["top_rows"].to_list()), want[:, :5])
    assert not np.array_equal(want[:, :5], plain[:, :5])  # the steps changed the ranking

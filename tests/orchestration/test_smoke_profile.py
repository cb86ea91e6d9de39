"""The DeepFashion2 profile at the paper's sizes (slow): `make smoke`'s command in a fresh
project, from generating the sample with a test split to both submission files."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from clothes_retrieval.cli import main
from clothes_retrieval.evaluation import read_submission_json
from tests.orchestration.tiny_project import fresh_copy

DETECTORS = ("atss", "cascade_mask_rcnn", "centernet", "retinanet_r101", "retinanet_x101")


@pytest.mark.slow
def test_the_paper_profile_builds_trains_a_step_and_reports(tmp_path: Path) -> None:
    project = fresh_copy(tmp_path)
    profile = project / "configs" / "pipeline" / "deepfashion2_smoke.yaml"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["run", "--profile", str(profile)])
    assert code == 0, buf.getvalue()[-3000:]

    out = project / "outputs" / "deepfashion2_smoke"
    for name in DETECTORS:  # each at its paper backbone and input size
        config = (out / "detector" / name / "config.py").read_text()
        assert "(1333, 800)" in config, name
        assert ("ResNeXt" if name == "retinanet_x101" else "ResNet") in config, name
    for model in ("m0", "m11"):
        saved = json.loads((out / "model" / model / "config.json").read_text())
        assert saved["model"]["backbone"] == "resnet152d"
        assert saved["model"]["input_size"] == [224, 224] and saved["model"]["dim"] == 1024
    report = (out / "evaluation_report" / "report.md").read_text()
    for name in (*DETECTORS, "m0", "m11", "m0+m11", "k-reciprocal re-ranking"):
        assert name in report, name
    bundle = json.loads((out / "published_index" / "bundle.json").read_text())
    assert [d["name"] for d in bundle["detectors"]] == list(DETECTORS)
    validation = read_submission_json(out / "evaluation_report_submission.json")
    test = read_submission_json(out / "test_submission" / "submission.json")
    assert len(validation) and len(test)
    test_info = json.loads(
        (
            out.parent
            / "deepfashion2_smoke_data"
            / "test"
            / "retrieval_test_consumer_information.json"
        ).read_text()
    )
    assert set(test["query_image_id"]) <= {r["id"] for r in test_info["images"]}

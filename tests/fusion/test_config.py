"""FusionConfig: defaults, validation with errors that name the key."""

from __future__ import annotations

import pytest

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.fusion import FusionConfig


def test_defaults():
    c = FusionConfig(detectors=["atss", "cascade"])
    assert (c.method, c.iou_thr, c.skip_box_thr, c.conf_type) == ("wbf", 0.55, 0.0, "avg")
    assert c.label_mode == "per_label" and c.workers == 0 and c.max_per_image is None
    assert c.detector_weights == [1.0, 1.0]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"detectors": ["a", "b"], "weights": [1.0]}, "weights"),
        ({"detectors": ["a"], "weights": [0.0]}, "weights"),
        ({"detectors": ["a", "a"]}, "detectors"),
        ({"detectors": []}, "detectors"),
        ({"detectors": ["a"], "iou_thr": 1.5}, "iou_thr"),
        ({"detectors": ["a"], "method": "nms", "label_mode": "vote"}, "label_mode"),
        ({"detectors": ["a"], "conf_typ": "max"}, "conf_typ"),
    ],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        validate_config(FusionConfig, data)


def test_subset_keeps_weights():
    c = FusionConfig(detectors=["a", "b", "c"], weights=[3, 2, 1])
    sub = c.for_detectors(["a", "c"])
    assert sub.detectors == ["a", "c"] and sub.weights == [3, 1]

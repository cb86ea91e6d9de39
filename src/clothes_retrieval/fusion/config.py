"""The fusion stage's config: which detectors, fused how.

Defaults follow the paper (Ji et al. 2020, Table 5: WBF over the detectors, ATSS first)
and ensemble-boxes' own defaults (``iou_thr`` 0.55, ``skip_box_thr`` 0, ``conf_type``
avg). What the paper leaves open is an option here, commented where it is set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from clothes_retrieval.config import FrozenConfig

__all__ = ["FusionConfig", "FusionMethod"]

FusionMethod = Literal["wbf", "nms", "soft_nms", "non_maximum_weighted"]


class FusionConfig(FrozenConfig):
    """How the boxes of several detectors become one set of boxes per image."""

    method: FusionMethod = "wbf"
    # Detector names as they appear in the detections table's ``detector`` column, best
    # first: the ablation adds them in this order (the paper starts from ATSS).
    detectors: list[str] = Field(min_length=1)
    # One weight per detector (same order); None = all 1.
    weights: list[float] | None = None
    iou_thr: float = Field(0.55, ge=0.0, le=1.0)  # a box joins a fused box above this IoU
    skip_box_thr: float = Field(0.0, ge=0.0, le=1.0)  # input boxes scored below are dropped
    conf_type: Literal["avg", "max", "box_and_model_avg", "absent_model_aware_avg"] = "avg"
    # The paper does not say how WBF treats an item that detectors label differently.
    # per_label: ensemble-boxes' behaviour, a box fuses only with boxes of its own label, so
    #   two detectors that disagree on the category leave two boxes.
    # vote: boxes fuse whatever their labels (WBF run as if there were one class); each
    #   fused box takes the label with the largest sum of weighted member scores (ties go to
    #   the top-scoring member's label) and keeps the WBF score of the whole cluster.
    label_mode: Literal["per_label", "vote"] = "per_label"
    workers: int = Field(0, ge=0)  # processes for fusing images; 0 = every usable core
    max_per_image: int | None = Field(None, ge=1)  # keep the top-scored fused boxes
    # Soft-NMS only (ensemble-boxes' defaults): Gaussian sigma, and the score under which
    # decayed boxes are dropped.
    soft_nms_sigma: float = Field(0.5, gt=0.0)
    soft_nms_thresh: float = Field(0.001, ge=0.0)

    @field_validator("detectors")
    @classmethod
    def _unique_detectors(cls, v: list[str]) -> list[str]:
        dup = sorted({d for d in v if v.count(d) > 1})
        if dup:
            raise ValueError(f"repeated detectors {dup}; list each once")
        return v

    @field_validator("weights")
    @classmethod
    def _positive_weights(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not w > 0 for w in v):
            raise ValueError(f"weights must all be > 0 (a zero weight zeroes its boxes), got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> FusionConfig:
        if self.weights is not None and len(self.weights) != len(self.detectors):
            raise ValueError(
                f"weights: {len(self.weights)} weights for {len(self.detectors)} detectors; "
                "give one per detector, in the same order, or leave weights unset"
            )
        if self.label_mode == "vote" and self.method != "wbf":
            raise ValueError(
                f"label_mode: 'vote' is implemented for method 'wbf' only, not {self.method!r}"
            )
        return self

    @property
    def detector_weights(self) -> list[float]:
        """The weights, with the default of 1 per detector filled in."""
        return list(self.weights) if self.weights is not None else [1.0] * len(self.detectors)

    def for_detectors(self, detectors: list[str]) -> FusionConfig:
        """This config restricted to a subset of its detectors (their weights kept)."""
        missing = [d for d in detectors if d not in self.detectors]
        if missing:
            raise ValueError(f"detectors {missing} are not in this config's {self.detectors}")
        weights = None
        if self.weights is not None:
            weights = [self.weights[self.detectors.index(d)] for d in detectors]
        return self.model_copy(update={"detectors": list(detectors), "weights": weights})

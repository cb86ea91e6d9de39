"""Estimates on paper: what training a profile's detectors and retrieval models would cost.

For every trained asset of a profile (``detector/<name>``, ``model/<name>``) this builds the
model exactly as its stage would (``build_mmdet_config`` + ``MODELS.build`` for a detector,
``build_model`` for a retrieval model) and measures on the CPU:

- **parameters**: ``sum(p.numel())`` of the built model (a retrieval model without its
  auxiliary classifier and class centres unless ``identities`` is given: both grow with the
  number of training identities, which only the data knows);
- **FLOPs per image** with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts
  matrix products and convolutions (2 FLOPs per multiply-add) and nothing else (no NMS,
  RoIAlign, pooling or element-wise ops), at the configured input size: once for inference
  (a detector's ``predict``, a retrieval model's forward) and once for the forward of a
  training step (the detector's ``loss``: a two-stage detector samples other RoIs then);
- **activation memory**: the bytes of the tensors autograd saves for backward during
  forward + loss (:func:`saved_tensor_bytes`, parameters excluded, storages counted once),
  at a small batch, scaled linearly to the configured per-process batch; plus parameters,
  gradients and optimizer state in fp32 (SGD with momentum 3×, AdamW 4× the parameters).

and turns them into GPU-hours at a stated device peak and utilisation::

    train GPU-h     = 3 · train-forward FLOPs/img · images/epoch · epochs / (TFLOPS · u · 3600e12)
    inference GPU-h =     inference FLOPs/img · images                    / (TFLOPS · u · 3600e12)

(forward + backward ≈ 3 forwards). Images are the published dataset sizes below, never
the profile's own data (the sample profile is estimated at DeepFashion2's full scale);
epochs and batch sizes are the configs'. Identical architectures at the same input size
are measured once.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from clothes_retrieval.config import dump_config
from clothes_retrieval.profile import PipelineProfile

__all__ = [
    "BOXES_PER_PHOTO",
    "DATASET_IMAGES",
    "DEEPFASHION2_TEST_IMAGES",
    "DEEPFASHION2_TRAIN_IMAGES",
    "DEEPFASHION2_TRAIN_ITEMS",
    "DEEPFASHION2_VALIDATION_IMAGES",
    "DEEPFASHION2_VALIDATION_ITEMS",
    "Device",
    "Measurement",
    "count_flops",
    "detector_training_images",
    "estimate_profile",
    "estimates_markdown",
    "gpu_hours",
    "measure_detector",
    "measure_retrieval_model",
    "retrieval_training_crops",
    "saved_tensor_bytes",
    "training_state_bytes",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- dataset sizes
# DeepFashion2's public release (github.com/switchablenorms/DeepFashion2, the half of the
# 491,895 images of the paper's Table 1 that was published): train 191,961 images with
# 312,186 annotated items; validation 32,153 images; test 62,629 images (20,681 consumer +
# 41,948 shop, annotations withheld for the challenge).
DEEPFASHION2_TRAIN_IMAGES = 191_961
DEEPFASHION2_TRAIN_ITEMS = 312_186
DEEPFASHION2_VALIDATION_IMAGES = 32_153
DEEPFASHION2_TEST_IMAGES = 20_681 + 41_948  # consumer + shop = 62,629
# Validation items are not among the figures above: approximated at train's items per image
# (1.63), i.e. ~52,290 (m7 trains on train + validation).
DEEPFASHION2_VALIDATION_ITEMS = round(
    DEEPFASHION2_TRAIN_ITEMS / DEEPFASHION2_TRAIN_IMAGES * DEEPFASHION2_VALIDATION_IMAGES
)
# Images of the paper's other training sets (Table 1, docs/paper.md). A retrieval model takes
# one crop per image of these (an approximation: product photos mostly show one garment),
# before de-duplication; a detector trained on them sees each image once per epoch.
DATASET_IMAGES: dict[str, int] = {
    "deepfashion2": DEEPFASHION2_TRAIN_IMAGES,
    "darn": 182_780,
    "street2shop": 416_840,
    "zalando": 32_642,
    "mvc": 156_449,
    "mpv": 50_290,
}
# Boxes embedded per searched photo: the paper's WBF_5 kept 590k boxes on the 32,153
# validation photos (Table 7), ~18.4 a photo; applied to validation + test.
BOXES_PER_PHOTO = 590_000 / DEEPFASHION2_VALIDATION_IMAGES
# Photos the detectors run on and whose boxes are embedded: validation + test, every photo
# (consumer queries and shop gallery).
SEARCHED_PHOTOS = DEEPFASHION2_VALIDATION_IMAGES + DEEPFASHION2_TEST_IMAGES

# Items (boxes) per synthetic training image of a detector: DeepFashion2 train has 1.63.
_GT_BOXES_PER_IMAGE = 2
_BYTES_FP32 = 4


@dataclass(frozen=True)
class Device:
    """The accelerator the GPU-hours are counted on: a peak and the fraction reached."""

    name: str = "A100 bf16 dense peak"
    tflops: float = 312.0
    utilisation: float = 0.4

    def __post_init__(self) -> None:
        if self.tflops <= 0:
            raise ValueError(f"device tflops must be > 0, got {self.tflops}")
        if not 0 < self.utilisation <= 1:
            raise ValueError(f"utilisation must be in (0, 1], got {self.utilisation}")

    def describe(self) -> str:
        return f"{self.name} {self.tflops:g} TFLOPS at {100 * self.utilisation:g} % utilisation"


@dataclass(frozen=True)
class Measurement:
    """What one architecture at one input size costs, per image."""

    params: int  # parameters of the trained model
    trainable: int  # of those, the ones with requires_grad (gradients + optimizer state)
    inference_flops: float  # matmul/conv FLOPs of inference, per image
    train_forward_flops: float  # matmul/conv FLOPs of a training forward + loss, per image
    saved_bytes_per_image: float  # tensors saved for backward, per image
    measured_batch: int  # the batch the two above were measured at


# --------------------------------------------------------------------------- measuring


def count_flops(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(matmul + convolution FLOPs of ``fn()``, its result), by ``FlopCounterMode``."""
    counter = FlopCounterMode(display=False)
    with counter:
        out = fn()
    return int(counter.get_total_flops()), out


def saved_tensor_bytes(
    fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()
) -> tuple[int, Any]:
    """(bytes of the tensors autograd saves for backward while running ``fn()``, its result).

    Each storage is counted once (views, and a tensor saved by several ops, share it) and
    ``exclude``'s storages (the parameters, counted apart) not at all. The saved tensors are
    held here until the measurement ends, so that a freed storage's address cannot be reused
    by a later one and be mistaken for it; then they are released, and the result's graph
    can no longer be back-propagated. (The graph keeps only an index: a pack hook returning
    the tensor itself makes a cycle through the graph, tensor -> grad_fn -> saved tensor,
    that Python's garbage collector cannot see, and every measured graph would leak.)
    """
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    held: list[torch.Tensor] = []
    total = 0

    def pack(t: torch.Tensor) -> int:
        nonlocal total
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += storage.nbytes()
        held.append(t)
        return len(held) - 1

    def unpack(index: int) -> torch.Tensor:
        if index >= len(held):
            raise RuntimeError(
                "saved_tensor_bytes released this graph's saved tensors; run the step again "
                "outside the measurement to back-propagate"
            )
        return held[index]

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = fn()
    held.clear()
    return total, out


def training_state_bytes(params: int, trainable: int, optimizer: str, momentum: float) -> int:
    """fp32 bytes of parameters, their gradients and the optimizer state: SGD keeps one
    momentum buffer (none at momentum 0), AdamW two moments, per trainable parameter."""
    states = {"sgd": 1 if momentum > 0 else 0, "adamw": 2}
    if optimizer not in states:
        raise ValueError(f"optimizer {optimizer!r}: estimates know {sorted(states)}")
    return _BYTES_FP32 * (params + trainable * (1 + states[optimizer]))


def gpu_hours(
    flops_per_image: float, images: float, device: Device, *, passes: float = 1.0
) -> float:
    """GPU-hours for ``images`` images of ``flops_per_image`` each, ``passes`` forward-passes'
    worth per image (3 for training: backward ≈ 2 forwards), at the device's
    ``tflops · utilisation``."""
    return passes * flops_per_image * images / (device.tflops * 1e12 * device.utilisation * 3600)


def _zero_score_thresholds(node: Any) -> None:
    """Every ``score_thr`` of a test_cfg to 0, so inference keeps its ``max_per_img`` boxes
    (with random weights nothing would pass a threshold; the mask head runs on every box)."""
    if isinstance(node, dict):
        for key in node:
            if key == "score_thr":
                node[key] = 0.0
            else:
                _zero_score_thresholds(node[key])
    elif isinstance(node, list):
        for value in node:
            _zero_score_thresholds(value)


def _detector_model_config(detector: Any, profile: str) -> dict[str, Any]:
    """The resolved mmdet model config of ``detector`` with ``profile``, as training builds
    it, with every test-time score threshold 0 (:func:`_zero_score_thresholds`)."""
    from clothes_retrieval.detection.config import build_mmdet_config

    with tempfile.TemporaryDirectory() as tmp:
        # Only the model is built: the annotation file is named in the config, never read.
        cfg = build_mmdet_config(
            detector, profile, train_json=Path(tmp) / "train.json", val_json=None, work_dir=tmp
        )
    model_cfg = cfg.model.to_dict()
    _zero_score_thresholds(model_cfg.get("test_cfg"))
    return model_cfg


def _detector_batch(
    model: torch.nn.Module, batch: int, height: int, width: int, *, training: bool
) -> dict[str, Any]:
    """A preprocessed batch of random (height, width) images with two boxes (and masks) each."""
    from mmdet.testing import demo_mm_inputs

    packed = demo_mm_inputs(
        batch_size=batch,
        image_shapes=[(3, height, width)] * batch,
        num_items=[_GT_BOXES_PER_IMAGE] * batch,
        num_classes=13,
        with_mask=bool(model.with_mask),  # BaseDetector: a mask head, in roi_head or not
    )
    return model.data_preprocessor(packed, training)


def measure_detector(detector: Any, profile: str, *, batch: int = 1) -> Measurement:
    """Parameters, FLOPs and saved-for-backward bytes of ``detector`` (a
    :class:`~clothes_retrieval.detection.config.DetectorConfig`) with ``profile``, at the
    profile's input size (long × short side, as a landscape image), measured at ``batch``.

    Inference: ``predict`` on one image (NMS and all, score thresholds 0 so the final stage
    keeps ``max_per_img`` boxes: an upper bound where a mask head runs per box). Training:
    ``loss`` on ``batch`` images with two ground-truth boxes (and masks) each.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict

    import clothes_retrieval.detection.timm_backbone  # noqa: F401  (registers the backbone)

    register_all_modules()
    # a ConfigDict: mmdet's heads read their test_cfg by attribute
    model = MODELS.build(ConfigDict(_detector_model_config(detector, profile)))
    long, short = detector.profile(profile).input_size
    height, width = short, long  # the largest landscape image mmdet's keep-ratio Resize makes
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    model.eval()
    with torch.no_grad():
        data = _detector_batch(model, 1, height, width, training=False)
        inference_flops, _ = count_flops(
            lambda: model.predict(data["inputs"], data["data_samples"])
        )

    model.train()
    data = _detector_batch(model, batch, height, width, training=True)

    def step() -> torch.Tensor:
        loss, _ = model.parse_losses(model.loss(data["inputs"], data["data_samples"]))
        return loss

    train_flops, (saved, _) = count_flops(
        lambda: saved_tensor_bytes(step, exclude=model.parameters())
    )
    return Measurement(
        params=params,
        trainable=trainable,
        inference_flops=float(inference_flops),
        train_forward_flops=train_flops / batch,
        saved_bytes_per_image=saved / batch,
        measured_batch=batch,
    )


def measure_retrieval_model(
    config: Any, *, identities: int | None = None, batch: int = 2
) -> Measurement:
    """Parameters, FLOPs and saved-for-backward bytes of the retrieval model of ``config``
    (a :class:`~clothes_retrieval.retrieval.config.RetrievalModelConfig`) at its input size.

    Training: forward + the configured losses on ``batch`` random crops, two per identity
    (as ``m_per_class`` pairs them; the classifier's BatchNorm1d needs two samples, so batch
    >= 2). ``identities``: the classes of the auxiliary classifier and the class centres;
    None leaves both out of the parameters (a 2-class stand-in is measured, costing next to
    nothing). A zero-shot entry is the pooled backbone, never trained.
    """
    from clothes_retrieval.retrieval.losses import RetrievalLoss
    from clothes_retrieval.retrieval.model import build_model, build_pooled_backbone

    if batch < 2:
        raise ValueError(f"batch {batch}: retrieval models are measured at batch >= 2")
    if identities is not None and identities < 1:
        raise ValueError(f"identities must be >= 1 (or None), got {identities}")
    height, width = config.model.input_size
    one = torch.randn(1, 3, height, width)  # (1, 3, H, W)
    if config.zero_shot:
        pooled = build_pooled_backbone(config.model, load_weights=False)
        with torch.no_grad():
            flops, _ = count_flops(lambda: pooled(one))
        params = sum(p.numel() for p in pooled.parameters())
        return Measurement(params, 0, float(flops), math.nan, math.nan, batch)

    classes = identities or 2
    with_classifier = config.loss.softmax.weight > 0
    model = build_model(config.model, classes if with_classifier else 0, load_weights=False)
    loss = RetrievalLoss(config.loss, classes, config.model.dim)
    if identities is not None:  # classifier and class centres (the loss's) counted
        deployed, counted = model, [*model.parameters(), *loss.parameters()]
    elif not with_classifier:  # the stand-in's centres are not counted
        deployed, counted = model, list(model.parameters())
    else:  # trained with a 2-class stand-in, counted and embedded without it
        deployed = build_model(config.model, 0, load_weights=False)
        counted = list(deployed.parameters())
    deployed.eval()
    with torch.no_grad():
        inference_flops, _ = count_flops(lambda: deployed(one))

    model.train()
    images = torch.randn(batch, 3, height, width)  # (B, 3, H, W)
    labels = (torch.arange(batch) // 2) % classes  # (B,): two crops per identity

    def step() -> torch.Tensor:
        embeddings, logits = model(images)  # (B, D), (B, K) or None
        return loss(embeddings, logits, labels).total

    train_flops, (saved, _) = count_flops(
        lambda: saved_tensor_bytes(step, exclude=[*model.parameters(), *loss.parameters()])
    )
    return Measurement(
        params=sum(p.numel() for p in counted),
        trainable=sum(p.numel() for p in counted if p.requires_grad),
        inference_flops=float(inference_flops),
        train_forward_flops=train_flops / batch,
        saved_bytes_per_image=saved / batch,
        measured_batch=batch,
    )


# --------------------------------------------------------------------------- data sizes


def _size(table: dict[str, int], name: str, where: str) -> int:
    if name not in table:
        raise ValueError(
            f"{where}: no published size for dataset {name!r}; estimates know {sorted(table)} "
            "(clothes_retrieval.estimates.DATASET_IMAGES)"
        )
    return table[name]


def detector_training_images(profile: PipelineProfile) -> int:
    """Images a detector sees per epoch: those of ``detection.datasets`` (None: every
    training source of the profile), DeepFashion2 at its train split."""
    datasets = profile.detection.datasets
    if datasets is None:
        roles = ("training", "splits")
        sources = profile.data.sources.values()
        datasets = tuple(dict.fromkeys(s.source for s in sources if s.role in roles))
    return sum(_size(DATASET_IMAGES, d, "detection.datasets") for d in datasets)


def retrieval_training_crops(config: Any) -> int:
    """Crops in the sampling pool of a retrieval model (``config``: a
    :class:`~clothes_retrieval.retrieval.config.RetrievalModelConfig`): DeepFashion2's
    items of its ``train_splits``, one crop per image of every other training source, each
    repeated by its ``source_weights``."""
    data = config.data
    crops = {**DATASET_IMAGES, "deepfashion2": DEEPFASHION2_TRAIN_ITEMS}
    unknown = sorted(set(data.train_splits) - {"train", "validation"})
    if unknown:
        raise ValueError(
            f"{config.name}: data.train_splits {unknown}: estimates know train, validation"
        )
    total = 0
    for source in data.training_sources:
        n = _size(crops, source, f"{config.name}: data.training_sources")
        if source == "deepfashion2":
            n = DEEPFASHION2_TRAIN_ITEMS * ("train" in data.train_splits) + (
                DEEPFASHION2_VALIDATION_ITEMS * ("validation" in data.train_splits)
            )
        total += n * data.source_weights.get(source, 1)
    return total


# --------------------------------------------------------------------------- the table

COLUMNS = {
    "asset": "asset",
    "architecture": "architecture",
    "input": "input (H×W)",
    "params_m": "params (M)",
    "inference_gflops": "inference GFLOPs/img",
    "train_gflops": "train fwd GFLOPs/img",
    "batch": "batch",
    "activation_gb": "activations (GB, measured at batch {measured}, scaled)",
    "state_gb": "params+grads+opt (GB)",
    "train_images": "train images/epoch",
    "epochs": "epochs",
    "train_gpu_h": "train GPU-h",
    "inference_images": "inference images",
    "inference_gpu_h": "inference GPU-h",
}


def _row(
    asset: str,
    architecture: str,
    input_size: tuple[int, int],
    m: Measurement,
    *,
    batch: int,
    optimizer: str,
    momentum: float,
    train_images: int,
    epochs: int,
    inference_images: float,
    device: Device,
) -> dict[str, Any]:
    trained = not math.isnan(m.saved_bytes_per_image)
    return {
        "asset": asset,
        "architecture": architecture,
        "input": f"{input_size[0]}×{input_size[1]}",
        "params_m": m.params / 1e6,
        "inference_gflops": m.inference_flops / 1e9,
        "train_gflops": m.train_forward_flops / 1e9 if trained else math.nan,
        "batch": batch if trained else math.nan,
        "measured_batch": m.measured_batch if trained else math.nan,
        "activation_gb": m.saved_bytes_per_image * batch / 1e9 if trained else math.nan,
        "state_gb": (
            training_state_bytes(m.params, m.trainable, optimizer, momentum) / 1e9
            if trained
            else math.nan
        ),
        "train_images": train_images if trained else 0,
        "epochs": epochs if trained else 0,
        "train_gpu_h": (
            gpu_hours(m.train_forward_flops, train_images * epochs, device, passes=3)
            if trained
            else 0.0
        ),
        "inference_images": inference_images,
        "inference_gpu_h": gpu_hours(m.inference_flops, inference_images, device),
    }


def _backbone_name(backbone: dict[str, Any]) -> str:
    """ResNet-101, ResNeXt-101 64x4d or timm:<name>, from a resolved mmdet backbone config."""
    if backbone["type"] == "TimmFeatureBackbone":
        return f"timm:{backbone['model_name']}"
    name = f"{backbone['type']}-{backbone['depth']}" if "depth" in backbone else backbone["type"]
    if "groups" in backbone and "base_width" in backbone:
        name += f" {backbone['groups']}x{backbone['base_width']}d"
    return name


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def estimate_profile(
    profile: PipelineProfile,
    *,
    device_tflops: float = 312.0,
    utilisation: float = 0.4,
    device_name: str | None = None,
    identities: int | None = None,
    detector_batch: int = 1,
    retrieval_batch: int = 2,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per trained asset of ``profile`` (``detector/<name>``, then ``model/<name>``):
    parameters, FLOPs, training memory and GPU-hours (module docstring).

    ``device_name`` None: "A100 bf16 dense peak" at 312 TFLOPS, else "device peak".
    ``identities``: classifier classes and class centres of the retrieval models (None:
    left out). ``detector_batch`` / ``retrieval_batch``: the batch the activations are
    measured at before scaling. The device and the assumptions are in ``df.attrs``.
    """
    from clothes_retrieval.detection.config import detector_config_path, load_detector_config
    from clothes_retrieval.retrieval.config import get_model_config

    name = device_name or ("A100 bf16 dense peak" if device_tflops == 312.0 else "device peak")
    device = Device(name=name, tflops=device_tflops, utilisation=utilisation)
    det, ret = profile.detection, profile.retrieval
    assets = [("detector", n) for n in det.detectors] + [("model", n) for n in ret.models]
    if not assets:
        raise ValueError(f"profile {profile.name}: no detection.detectors and no retrieval.models")
    cache: dict[str, Measurement] = {}
    rows: list[dict[str, Any]] = []
    for kind, asset in tqdm(assets, desc="estimates", disable=not progress):
        if kind == "detector":
            detector = load_detector_config(detector_config_path(asset, det.configs))
            prof = detector.profile(det.profile)
            model_cfg = _detector_model_config(detector, det.profile)
            key = _key(model_cfg, prof.input_size, detector_batch)
            if key not in cache:
                log.info("measuring detector/%s (%s profile)", asset, det.profile)
                cache[key] = measure_detector(detector, det.profile, batch=detector_batch)
            images = detector_training_images(profile)
            rows.append(
                _row(
                    f"detector/{asset}",
                    f"{model_cfg['type']} {_backbone_name(model_cfg['backbone'])}",
                    (prof.input_size[1], prof.input_size[0]),
                    cache[key],
                    batch=prof.batch_size,
                    optimizer=prof.optimizer,
                    momentum=prof.momentum,
                    train_images=images,
                    # as build_mmdet_config: max_epochs replaces the profile's epochs
                    epochs=det.max_epochs if det.max_epochs is not None else prof.epochs,
                    inference_images=SEARCHED_PHOTOS,
                    device=device,
                )
            )
        else:
            config = get_model_config(asset, ret.registry, ret.overrides)
            model = dump_config(config.model)
            for irrelevant in ("weights", "weights_path", "resize", "letterbox_fill"):
                model.pop(irrelevant, None)
            loss_parts = {k: v["weight"] > 0 for k, v in dump_config(config.loss).items()}
            key = _key(model, config.zero_shot, loss_parts, identities, retrieval_batch)
            if key not in cache:
                log.info("measuring model/%s (%s)", asset, config.model.backbone)
                cache[key] = measure_retrieval_model(
                    config, identities=identities, batch=retrieval_batch
                )
            tc = config.train
            pool = retrieval_training_crops(config)
            iterations = tc.iterations_per_epoch or max(1, pool // tc.batch_size)
            descriptors = "+".join(config.model.descriptors)
            rows.append(
                _row(
                    f"model/{asset}",
                    f"{config.model.backbone} CGD {descriptors} {config.model.dim}-d",
                    config.model.input_size,
                    cache[key],
                    batch=tc.batch_size,
                    optimizer=config.optim.name,
                    momentum=config.optim.momentum,
                    train_images=iterations * tc.batch_size,
                    epochs=tc.epochs,
                    inference_images=SEARCHED_PHOTOS * BOXES_PER_PHOTO,
                    device=device,
                )
            )
    log.info("measured %d architectures for %d assets", len(cache), len(assets))
    df = pd.DataFrame(rows)
    df.attrs["device"] = device.describe()
    df.attrs["assumptions"] = _assumptions(profile, device, identities)
    return df


def _assumptions(profile: PipelineProfile, device: Device, identities: int | None) -> str:
    det = profile.detection
    classifier = (
        f"{identities:,} identities (classifier and class centres included)"
        if identities
        else "the classifier and class centres (dim × identities each) left out of the "
        "parameters (the number of identities is the data's)"
    )
    return (
        f"Device: {device.describe()}; one process per asset at its configured batch. "
        "Train GPU-h = 3 × training-forward FLOPs/img (forward + backward) × images/epoch × "
        f"epochs / (TFLOPS × utilisation × 3600 × 1e12); FLOPs are matrix products and "
        "convolutions only (torch FlopCounterMode, 2 per multiply-add). Dataset sizes "
        f"(public DeepFashion2): train {DEEPFASHION2_TRAIN_IMAGES:,} images / "
        f"{DEEPFASHION2_TRAIN_ITEMS:,} items, validation {DEEPFASHION2_VALIDATION_IMAGES:,} "
        f"images (~{DEEPFASHION2_VALIDATION_ITEMS:,} items at train's items per image), test "
        f"{DEEPFASHION2_TEST_IMAGES:,} images; other sources one crop per image of the "
        "paper's Table 1 ("
        + ", ".join(f"{k} {v:,}" for k, v in DATASET_IMAGES.items() if k != "deepfashion2")
        + "), before de-duplication. Detectors: all train photos of their datasets "
        f"(photo_sources {list(det.photo_sources)} not split), inference on the "
        f"{SEARCHED_PHOTOS:,} validation + test photos with score thresholds 0 "
        "(max_per_img boxes); embeddings of validation + test at the paper's 590k WBF_5 "
        f"boxes per {DEEPFASHION2_VALIDATION_IMAGES:,} validation photos (Table 7, "
        f"{BOXES_PER_PHOTO:.1f} a photo). Activations: tensors saved for backward during "
        "forward + loss, measured on the CPU in fp32 and scaled linearly to the batch (mixed "
        "precision roughly halves them); parameters + gradients + optimizer state in fp32 "
        f"(SGD with momentum 3×, AdamW 4× the parameters). Retrieval models: {classifier}."
    )


def _fmt(value: Any, digits: int | None) -> str:
    """A cell: ``digits`` decimals with thousands separators, or (None) three significant
    digits below 10 (GPU-hours of a CPU-sized model are hundredths)."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if digits is None:
        if value == 0:
            return "0"
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else None
        if digits is None:
            return f"{value:.3g}"
    return f"{value:,.{digits}f}"


# decimals per column (None: adaptive, see _fmt); the rest are text or whole numbers
_DIGITS: dict[str, int | None] = {
    "params_m": 1,
    "inference_gflops": None,
    "train_gflops": None,
    "activation_gb": None,
    "state_gb": None,
    "train_gpu_h": None,
    "inference_gpu_h": None,
}


def estimates_markdown(df: pd.DataFrame, *, title: str | None = None) -> str:
    """``df`` of :func:`estimate_profile` as a Markdown table with a total row, then the
    line of assumptions (from ``df.attrs``)."""
    if "assumptions" not in df.attrs:
        raise ValueError("df has no attrs['assumptions']: pass the frame estimate_profile made")
    measured = sorted({int(b) for b in df["measured_batch"].dropna()})
    measured_text = " / ".join(str(b) for b in measured) or "—"
    header = [COLUMNS[c].format(measured=measured_text) for c in COLUMNS]
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in df.to_dict("records"):
        cells = [_fmt(record[c], _DIGITS.get(c, 0)) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    total = {c: "" for c in COLUMNS}
    total["asset"] = "**total**"
    for c in ("params_m", "train_gpu_h", "inference_gpu_h"):
        total[c] = f"**{_fmt(float(df[c].sum()), _DIGITS[c])}**"
    lines.append("| " + " | ".join(total[c] for c in COLUMNS) + " |")
    lines += ["", f"Assumptions: {df.attrs['assumptions']}", ""]
    return "\n".join(lines)

"""The pod a training asset gets on the cluster carries its GPU request: the real
definitions of the paper profile (with the values' overrides and a few more), a training
asset's op tags, fed through dagster-k8s's own code that builds a step's Kubernetes Job."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs import build_definitions
from orchestration.defs.kubernetes import asset_pod_tags, executor_config
from tests.deploy import chart

PAPER = chart.REPO / "configs" / "pipeline" / "deepfashion2.yaml"
GPU_NODES = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
POOL = {"cloud.google.com/gke-nodepool": "ml"}


@pytest.fixture(scope="module")
def values() -> dict:
    return chart.load_values()


@pytest.fixture(scope="module")
def defs(values: dict) -> dg.Definitions:
    """The paper profile as the cluster's code location loads it, with 4 detector GPUs
    (retrieval keeps the profile's 8) and node selectors."""
    overrides = chart.overrides_of(values)
    overrides["operations"]["kubernetes"].update(
        node_selector=POOL, training_node_selector=GPU_NODES
    )
    overrides["detection"] = {"world_size": 4}
    return build_definitions(str(PAPER), json.dumps(overrides))


def _job(values: dict, defs: dg.Definitions, tags: dict[str, str], tmp_path: Path):
    profile = defs.resources["pipeline"].load()
    kubeconfig = chart.write_kubeconfig(tmp_path / "kubeconfig")
    return chart.step_job(values, executor_config(profile), tags, kubeconfig)


@pytest.mark.parametrize(
    ("key", "gpus"),
    [(dg.AssetKey(["detector", "atss"]), 4), (dg.AssetKey(["model", "m1"]), 8)],
    ids=["detector", "retrieval model"],
)
def test_a_training_pod_asks_for_its_world_size_in_gpus(
    values: dict, defs: dg.Definitions, tmp_path: Path, key: dg.AssetKey, gpus: int
) -> None:
    tags = defs.resolve_assets_def(key).op.tags
    job, namespace = _job(values, defs, tags, tmp_path)
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.resources.limits["nvidia.com/gpu"] == str(gpus)
    assert container.resources.requests["nvidia.com/gpu"] == str(gpus)
    assert container.resources.requests["cpu"] == "8"  # KubernetesConfig.training
    assert container.resources.limits["memory"] == "64Gi"
    assert pod.node_selector == {**POOL, **GPU_NODES}
    assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]
    assert namespace == chart.NAMESPACE
    assert container.image == chart.image(values)  # the code location's own image
    # Each volume once (the code location's, the executor's and the tags' are merged),
    # each mounted where the profile says; /dev/shm memory-backed for the DataLoader.
    volumes = {v.name: v for v in pod.volumes}
    assert len(volumes) == len(pod.volumes)
    assert volumes["artifacts"].persistent_volume_claim.claim_name == (
        "clothes-retrieval-artifacts"
    )
    assert volumes["dshm"].empty_dir.medium == "Memory"
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    assert len(mounts) == len(container.volume_mounts)
    assert mounts == {"artifacts": "/mnt/artifacts", "dvc-cache": "/mnt/dvc-cache",
                      "datasets": "/datasets", "dshm": "/dev/shm"}  # fmt: skip
    profile = defs.resources["pipeline"].load()
    assert str(profile.output_root).startswith(mounts["artifacts"] + "/")
    # The code location's environment reaches the step (its profile and overrides).
    env = {e.name: e.value for e in container.env}
    assert env["CLOTHES_RETRIEVAL_EXECUTOR"] == "k8s"


def test_any_other_asset_gets_no_gpu(values: dict, defs: dg.Definitions, tmp_path: Path) -> None:
    profile = defs.resources["pipeline"].load()
    # Op tags reach the executor as strings (Dagster JSON-encodes a dict value).
    tags = {key: json.dumps(value) for key, value in asset_pod_tags(profile).items()}
    job, _ = _job(values, defs, tags, tmp_path)
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}
    assert pod.node_selector == POOL and not pod.tolerations
    assert {v.name for v in pod.volumes} == {"artifacts", "dvc-cache", "datasets"}

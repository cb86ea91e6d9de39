"""Pod resources of the assets on Kubernetes (``deploy/helm``): op tags that dagster-k8s's
``k8s_job_executor`` reads (``dagster-k8s/config``), and that executor.

Everything comes from the profile's ``operations.kubernetes``
(:class:`~clothes_retrieval.operations.KubernetesConfig`):

- :func:`training_pod_tags`: a training asset's pod asks for ``world_size`` GPUs (limit =
  request: torchrun starts one process per GPU in it), the training CPU and memory, the GPU
  nodes (node selector, tolerations), a memory-backed ``/dev/shm``, and mounts the artifact
  and DVC cache volumes (and the datasets, read-only, when configured);
- :func:`asset_pod_tags`: any other asset's pod: the assets' CPU and memory, the node
  selector, the same volumes;
- :func:`executor_config` / :func:`build_executor`: the ``k8s_job_executor`` (one pod per
  asset) with the namespace, image and service account, and the same volumes on every
  step, chosen when the code location runs with ``CLOTHES_RETRIEVAL_EXECUTOR=k8s`` (the
  Helm values set it); otherwise the single-machine in-process executor.

The tags are plain data and cost nothing off the cluster: the in-process executor ignores
them. dagster-k8s merges the executor's volumes with a step's identical ones (no duplicate).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from clothes_retrieval.operations import KubernetesConfig, PodResources
from clothes_retrieval.profile import PipelineProfile

K8S_CONFIG_TAG = "dagster-k8s/config"  # dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY
EXECUTOR_ENV = "CLOTHES_RETRIEVAL_EXECUTOR"  # "k8s": the k8s_job_executor; unset: in-process
SHM_VOLUME = "dshm"  # the training pods' memory-backed /dev/shm


def _volumes(k: KubernetesConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The claims every pod mounts (artifacts, DVC cache, datasets when set): (pod volumes,
    container volume mounts)."""
    volumes, mounts = [], []
    for name, claim in k.claims().items():
        source: dict[str, Any] = {"claim_name": claim.claim}
        mount: dict[str, Any] = {"name": name, "mount_path": str(claim.mount_path)}
        if claim.read_only:
            source["read_only"] = True
            mount["read_only"] = True
        volumes.append({"name": name, "persistent_volume_claim": source})
        mounts.append(mount)
    return volumes, mounts


def _pod_tags(
    resources: dict[str, Any],
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"volumes": volumes}
    if node_selector:
        pod_spec["node_selector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    container = {"resources": resources, "volume_mounts": mounts}
    return {K8S_CONFIG_TAG: {"container_config": container, "pod_spec_config": pod_spec}}


def _requests(resources: PodResources) -> dict[str, dict[str, str]]:
    return {
        "requests": {"cpu": resources.cpu, "memory": resources.memory},
        "limits": {"memory": resources.memory},
    }


def training_pod_tags(profile: PipelineProfile, world_size: int) -> dict[str, Any]:
    """Op tags of a training asset: its pod asks for ``world_size`` GPUs."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    k = profile.operations.kubernetes
    resources = _requests(k.training)
    gpus = str(world_size)
    resources["requests"][k.gpu_resource] = gpus
    resources["limits"][k.gpu_resource] = gpus  # extended resources: limit = request
    volumes, mounts = _volumes(k)
    if k.shm_size is not None:
        volumes.append(
            {"name": SHM_VOLUME, "empty_dir": {"medium": "Memory", "size_limit": k.shm_size}}
        )
        mounts.append({"name": SHM_VOLUME, "mount_path": "/dev/shm"})
    tolerations = [t.model_dump(exclude_none=True) for t in k.training_tolerations]
    node_selector = {**k.node_selector, **k.training_node_selector}
    return _pod_tags(resources, node_selector, tolerations, volumes, mounts)


def asset_pod_tags(profile: PipelineProfile) -> dict[str, Any]:
    """Op tags of every asset but the trainings (data, inference, fusion, index, report)."""
    k = profile.operations.kubernetes
    volumes, mounts = _volumes(k)
    return _pod_tags(_requests(k.assets), dict(k.node_selector), [], volumes, mounts)


def executor_config(profile: PipelineProfile) -> dict[str, Any]:
    """Config of the ``k8s_job_executor`` (its ``config_schema``) for the profile."""
    k = profile.operations.kubernetes
    volumes, mounts = _volumes(k)
    config: dict[str, Any] = {
        "job_namespace": k.namespace,
        "image_pull_policy": k.image_pull_policy,
        "volumes": volumes,
        "volume_mounts": mounts,
    }
    if k.image is not None:
        config["job_image"] = k.image
    if k.service_account is not None:
        config["service_account_name"] = k.service_account
    return config


def check_on_cluster(profile: PipelineProfile) -> None:
    """Refuse a profile whose artifacts would not reach the other pods: ``output_root``
    must lie on the shared artifact volume."""
    k = profile.operations.kubernetes
    root, mount = profile.output_root, k.artifacts.mount_path
    if not root.is_absolute() or (root != mount and mount not in root.parents):
        raise ValueError(
            f"output_root {str(root)!r} is not on the artifact volume "
            f"(operations.kubernetes.artifacts.mount_path {str(mount)!r}): every asset runs in "
            f"its own pod, so set output_root to {str(mount / 'outputs')!r} or another path "
            "under the mount"
        )


def build_executor(profile: PipelineProfile) -> dg.ExecutorDefinition:
    """The executor of the code location: ``k8s_job_executor`` (one pod per asset) when
    ``CLOTHES_RETRIEVAL_EXECUTOR=k8s``, else one step at a time in process (training owns
    the cores)."""
    choice = os.environ.get(EXECUTOR_ENV, "in_process")
    if choice == "in_process":
        return dg.in_process_executor
    if choice != "k8s":
        raise ValueError(f"{EXECUTOR_ENV}={choice!r}: use k8s, or in_process (the default)")
    from dagster_k8s import k8s_job_executor

    check_on_cluster(profile)
    return k8s_job_executor.configured(executor_config(profile), name="k8s")

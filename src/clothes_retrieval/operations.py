"""How a profile is operated: its retraining schedule, GPU slots, retries, alerts and
cluster resources (the ``operations:`` section of a profile).

Everything here is off or conservative by default, so one person on one machine gets what
``make run`` always did; a team switches the schedule on and sizes the pool in its profile.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from clothes_retrieval.config import FrozenConfig

__all__ = [
    "AlertConfig",
    "KubernetesConfig",
    "OperationsConfig",
    "PodResources",
    "RetryConfig",
    "ScheduleConfig",
    "Toleration",
    "VolumeClaim",
    "visible_gpus",
]


def _check_cron(value: str | None) -> str | None:
    if value is None:
        return None
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(
            f"{value!r} is not a cron expression of 5 fields (minute hour day month weekday), "
            "e.g. '0 3 * * 0' for Sundays at 03:00"
        )
    allowed = set("0123456789*/,-")
    for f in fields:
        if not set(f) <= allowed:
            raise ValueError(f"{value!r}: field {f!r} may only hold digits and * / , -")
    return value


class ScheduleConfig(FrozenConfig):
    """The retraining schedule: retrain every detector and model on the current data version;
    the automation then rebuilds what follows (fusion, embeddings, index, report, publish)."""

    cron: str | None = Field(
        default=None, description="cron of the retraining schedule; None: no schedule (default)"
    )
    timezone: str = Field(default="UTC", description="IANA time zone of the cron")
    running: bool = Field(
        default=True,
        description="when cron is set: the schedule starts running with the daemon (False: "
        "listed but stopped until someone starts it)",
    )

    _cron = field_validator("cron")(classmethod(lambda cls, v: _check_cron(v)))


class RetryConfig(FrozenConfig):
    """Retries of a failed step (Dagster retry policy): a lost worker, a full disk that was
    cleaned, a flaky file system. A bad config fails again and so ends the run."""

    max_retries: int = Field(default=2, ge=0, description="retries after the first failure")
    delay_s: float = Field(default=30.0, ge=0, description="seconds before the first retry")
    backoff: Literal["exponential", "linear"] = Field(
        default="exponential", description="how the delay grows between retries"
    )


class AlertConfig(FrozenConfig):
    """Where a failed run or a blocked publish is reported: always a log line (ERROR) and a
    JSON file; a webhook too when ``webhook_url`` is set."""

    dir: Path | None = Field(
        default=None, description="folder of the alert JSON files; None: <output>/<name>/alerts"
    )
    webhook_url: str | None = Field(
        default=None, description="URL that receives each alert as a JSON POST (Slack-style)"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="webhook request timeout")

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


# A Kubernetes resource quantity: "4", "500m", "1.5", "64Gi", "512M".
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")


def _check_quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity: give a number with an optional suffix, "
            "e.g. '4' or '500m' (CPU), '64Gi' (memory)"
        )
    return value


class PodResources(FrozenConfig):
    """CPU and memory of one pod: requested (the scheduler reserves them), and the memory
    also its limit (a pod over it is killed, rather than starving its node)."""

    cpu: str = Field(description="CPU request, e.g. '8' or '500m'")
    memory: str = Field(description="memory request and limit, e.g. '64Gi'")

    _quantities = field_validator("cpu", "memory")(classmethod(lambda cls, v: _check_quantity(v)))


class Toleration(FrozenConfig):
    """A pod toleration of a node taint (GPU node pools are usually tainted)."""

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = Field(default=None, description="with operator Equal")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"


class VolumeClaim(FrozenConfig):
    """A PersistentVolumeClaim mounted into every pod (ReadWriteMany: trainings, inference
    and the code server read and write it at once)."""

    claim: str = Field(description="name of the PersistentVolumeClaim")
    mount_path: Path = Field(description="where the pods see it")
    read_only: bool = Field(default=False, description="mounted read-only")

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"{str(value)!r}: a mount path must be absolute")
        return value


class KubernetesConfig(FrozenConfig):
    """Pod resources of the assets when the code location runs on Kubernetes
    (``deploy/helm``, the ``k8s_job_executor``: one pod per asset); ignored by the default
    single-machine executor.

    A training asset's pod asks for ``world_size`` GPUs (its stage's ``world_size``: torchrun
    starts one process per GPU in that pod), ``training`` CPU and memory, the GPU nodes
    (``training_node_selector``, ``training_tolerations``) and a memory-backed ``/dev/shm``
    of ``shm_size`` (DataLoader workers and NCCL exchange tensors through it; the container
    runtime's default of 64 MB stops them). Every other asset asks for ``assets`` CPU and
    memory. Every pod mounts the ``artifacts`` claim (the profile's ``output_root`` must lie
    on it), the ``dvc_cache`` claim and, when set, the ``datasets`` claim (read-only, e.g.
    at ``/datasets``, where ``deepfashion2.yaml`` reads its sources and weights).
    """

    namespace: str = Field(
        default="dagster", description="namespace of the step pods (the Helm release's)"
    )
    image: str | None = Field(
        default=None,
        description="image of the step pods; None: the code location's own (the chart's "
        "user deployment image), which is what a run normally wants",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account: str | None = Field(
        default=None, description="service account of the step pods; None: the chart's"
    )
    gpu_resource: str = Field(
        default="nvidia.com/gpu",
        description="extended resource name of a GPU (NVIDIA device plugin; 'amd.com/gpu' for AMD)",
    )
    training: PodResources = PodResources(cpu="8", memory="64Gi")
    assets: PodResources = PodResources(cpu="2", memory="8Gi")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="node labels every step pod requires"
    )
    training_node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="node labels a training pod requires besides node_selector, e.g. "
        "{'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB'}",
    )
    training_tolerations: tuple[Toleration, ...] = (Toleration(key="nvidia.com/gpu"),)
    shm_size: str | None = Field(
        default="16Gi",
        description="size of the training pods' memory-backed /dev/shm; None: the runtime's",
    )
    artifacts: VolumeClaim = VolumeClaim(
        claim="clothes-retrieval-artifacts", mount_path=Path("/mnt/artifacts")
    )
    dvc_cache: VolumeClaim = VolumeClaim(
        claim="clothes-retrieval-dvc-cache", mount_path=Path("/mnt/dvc-cache")
    )
    datasets: VolumeClaim | None = Field(
        default=None, description="the datasets and weights, mounted read-only; None: none"
    )

    _shm = field_validator("shm_size")(
        classmethod(lambda cls, v: v if v is None else _check_quantity(v))
    )

    def claims(self) -> dict[str, VolumeClaim]:
        """The volumes every pod mounts, by volume name."""
        named = {"artifacts": self.artifacts, "dvc-cache": self.dvc_cache}
        if self.datasets is not None:
            named["datasets"] = self.datasets.model_copy(update={"read_only": True})
        return named

    @model_validator(mode="after")
    def _check(self) -> KubernetesConfig:
        claims = list(self.claims().items())
        for i, (name, claim) in enumerate(claims):
            for other_name, other in claims[i + 1 :]:
                if claim.claim == other.claim:
                    raise ValueError(
                        f"{name} and {other_name} name the same claim {claim.claim!r}: give "
                        "each its own PersistentVolumeClaim"
                    )
                a, b = claim.mount_path, other.mount_path
                if a == b or a in b.parents or b in a.parents:
                    raise ValueError(
                        f"the mount paths of {name} ({str(a)!r}) and {other_name} ({str(b)!r}) "
                        "overlap: mount them apart"
                    )
        return self


class OperationsConfig(FrozenConfig):
    """The ``operations:`` section of a profile."""

    schedule: ScheduleConfig = ScheduleConfig()
    gpu_slots: int | None = Field(
        default=None,
        ge=1,
        description="slots of the 'gpu' concurrency pool: trainings running at once on the "
        "instance; None: one per visible GPU (1 on a machine without one)",
    )
    retries: RetryConfig = RetryConfig()
    alerts: AlertConfig = AlertConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()


def visible_gpus() -> int:
    """CUDA devices this process sees (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0

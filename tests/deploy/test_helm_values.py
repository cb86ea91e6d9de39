"""deploy/helm/values.yaml and the executor config against the installed dagster-k8s's own
config schemas (K8sRunLauncher.config_type(), k8s_job_executor.config_schema), and the
names the values and the profile's operations.kubernetes share."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from dagster._config import process_config
from dagster_k8s import K8sRunLauncher, k8s_job_executor

from clothes_retrieval.profile import load_profile
from orchestration.defs.kubernetes import EXECUTOR_ENV, executor_config
from tests.deploy import chart

PROFILES = chart.REPO / "configs" / "pipeline"


def _launcher_errors(values: dict) -> list[str]:
    result = process_config(K8sRunLauncher.config_type(), chart.run_launcher_config(values))
    return [] if result.success else [e.message for e in result.errors]


def _executor_errors(config: dict) -> list[str]:
    result = process_config(k8s_job_executor.config_schema.config_type, config)
    return [] if result.success else [e.message for e in result.errors]


def _cluster_profile(values: dict):
    env = chart.user_deployment_env(values)
    profile = PROFILES / Path(env["CLOTHES_RETRIEVAL_PROFILE"]).name
    return load_profile(profile, chart.overrides_of(values))


def test_the_run_launcher_config_validates_and_the_launcher_starts(tmp_path: Path) -> None:
    values = chart.load_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert _launcher_errors(values) == []
    config = process_config(K8sRunLauncher.config_type(), chart.run_launcher_config(values))
    launcher = K8sRunLauncher(
        **{
            **config.value,
            "load_incluster_config": False,
            "kubeconfig_file": str(chart.write_kubeconfig(tmp_path / "kubeconfig")),
        }
    )
    assert launcher.job_namespace == chart.NAMESPACE
    assert launcher.fail_pod_on_run_failure is True


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("loadInclusterConfig", "yes", "load_incluster_config"),  # not a bool
        ("envVars", "HF_HUB_OFFLINE=1", "env_vars"),  # not a list
        ("jobNamesapce", "dagster", "jobNamesapce"),  # a misspelt key: the chart forbids it
    ],
    ids=["wrong type", "not a list", "misspelt key"],
)
def test_a_broken_run_launcher_value_fails(key: str, value: object, named: str) -> None:
    values = copy.deepcopy(chart.load_values())
    values["runLauncher"]["config"]["k8sRunLauncher"][key] = value
    try:
        errors = _launcher_errors(values)
    except ValueError as err:
        errors = [str(err)]
    assert any(named in e for e in errors), errors


def test_the_rest_of_the_values_is_the_deployment_we_mean() -> None:
    values = chart.load_values()
    deployments = values["dagster-user-deployments"]
    assert deployments["enabled"] and len(deployments["deployments"]) == 1
    d = chart.user_deployment(values)
    assert d["codeServerArgs"] == ["-m", "orchestration.definitions"]
    assert chart.user_deployment_env(values)[EXECUTOR_ENV] == "k8s"
    assert values["postgresql"]["enabled"] is True
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"]["enabled"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    # The chart parses the user deployment's container context with dagster-k8s's schema.
    from dagster_k8s.container_context import K8sContainerContext

    container_context = chart.user_deployment_container_context(values)
    context = K8sContainerContext.create_from_config(container_context)
    assert context.namespace == chart.NAMESPACE


def test_the_executor_config_validates_for_the_cluster_profile() -> None:
    values = chart.load_values()
    profile = _cluster_profile(values)
    config = executor_config(profile)
    assert _executor_errors(config) == []
    assert config["job_namespace"] == chart.NAMESPACE == values["runLauncher"]["config"][
        "k8sRunLauncher"]["jobNamespace"]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("job_namepsace", "dagster", "job_namepsace"),  # misspelt
        ("max_concurrent", "four", "max_concurrent"),  # not an int
        ("volumes", "artifacts", "volumes"),  # not a list
    ],
    ids=["misspelt key", "wrong type", "not a list"],
)
def test_a_broken_executor_config_fails(key: str, value: object, named: str) -> None:
    config = {**executor_config(_cluster_profile(chart.load_values())), key: value}
    errors = _executor_errors(config)
    assert any(named in e for e in errors), errors


def test_the_values_mount_the_volumes_the_profile_names() -> None:
    """The code location's volumes (values) are the ones every step pod mounts (the profile's
    operations.kubernetes), and output_root lies on the artifact volume."""
    values = chart.load_values()
    profile = _cluster_profile(values)
    k = profile.operations.kubernetes
    d = chart.user_deployment(values)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in d["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in d["volumeMounts"]}
    assert claims == {name: c.claim for name, c in k.claims().items()}
    assert mounts == {name: str(c.mount_path) for name, c in k.claims().items()}
    from orchestration.defs.kubernetes import check_on_cluster

    check_on_cluster(profile)  # raises when output_root is off the artifact volume
    with pytest.raises(ValueError, match="not on the artifact volume"):
        check_on_cluster(load_profile(PROFILES / "deepfashion2.yaml"))

"""What the official Dagster Helm chart makes of deploy/helm/values.yaml, in Python (no helm
binary, no cluster): the instance's run launcher config and the user deployment's container
context, transcribed from the chart's templates, and the Kubernetes Job that dagster-k8s
builds for one step from them.

Transcribed from dagster-io/dagster ``helm/dagster``:
- ``templates/helpers/instance/_run-launcher.tpl`` (``dagsterYaml.runLauncher.k8s``),
- ``charts/dagster-user-deployments/templates/helpers/_helpers.tpl``
  (``dagsterUserDeployments.k8sContainerContext``),
- ``schema/schema/charts/dagster/subschema/run_launcher.py`` (``K8sRunLauncherConfig``: the
  keys the chart's values schema allows; it forbids others);
and from dagster-k8s's ``K8sStepHandler._get_container_context`` / ``launch_step``
(executor.py): how a step's pod spec is merged from the launcher, the code location, the
executor and the op tags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from dagster._config import process_config

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "values.yaml"
RELEASE = "clothes-retrieval"
NAMESPACE = "dagster"  # the release's namespace in these tests
FULLNAME = f"{RELEASE}-dagster"  # dagster.fullname: release name + chart name

# run_launcher.py, K8sRunLauncherConfig (extra = forbid)
K8S_RUN_LAUNCHER_KEYS = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
    "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
    "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
RUN_K8S_CONFIG_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "test", "user": {"token": "test"}}],
    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    "current-context": "test",
}


def load_values(path: Path = VALUES) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def run_launcher_config(values: dict[str, Any]) -> dict[str, Any]:
    """The ``run_launcher.config`` the chart writes into the instance's dagster.yaml."""
    launcher = values["runLauncher"]
    if launcher["type"] != "K8sRunLauncher":
        raise ValueError(f"runLauncher.type is {launcher['type']!r}, not K8sRunLauncher")
    k = launcher["config"]["k8sRunLauncher"]
    unknown = set(k) - K8S_RUN_LAUNCHER_KEYS
    if unknown:
        raise ValueError(f"runLauncher.config.k8sRunLauncher: keys the chart forbids {unknown}")
    glob = values.get("global", {})
    config: dict[str, Any] = {
        "load_incluster_config": k["loadInclusterConfig"],
        "job_namespace": k.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k["imagePullPolicy"],
        "service_account_name": values.get("serviceAccount", {}).get("name") or FULLNAME,
        "dagster_home": glob.get("dagsterHome", "/opt/dagster/dagster_home"),
        "instance_config_map": f"{FULLNAME}-instance",
        "postgres_password_secret": glob.get("postgresqlSecretName", "dagster-postgresql-secret"),
    }
    if k.get("kubeconfigFile"):
        config["kubeconfig_file"] = k["kubeconfigFile"]
    if values.get("imagePullSecrets"):
        config["image_pull_secrets"] = values["imagePullSecrets"]
    if "image" in k:
        config["job_image"] = f"{k['image']['repository']}:{k['image']['tag']}"
    for key, name in [("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")]:
        if k.get(key):
            config[name] = [ref["name"] for ref in k[key] if "name" in ref]
    for key, name in [
        ("envVars", "env_vars"), ("volumeMounts", "volume_mounts"), ("volumes", "volumes"),
        ("labels", "labels"), ("resources", "resources"), ("schedulerName", "scheduler_name"),
        ("securityContext", "security_context"),
    ]:  # fmt: skip
        if k.get(key):
            config[name] = k[key]
    if k.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    if k.get("runK8sConfig"):
        config["run_k8s_config"] = {
            RUN_K8S_CONFIG_KEYS[key]: value for key, value in k["runK8sConfig"].items() if value
        }
    return config


def user_deployment(values: dict[str, Any], name: str = "clothes-retrieval") -> dict[str, Any]:
    for deployment in values["dagster-user-deployments"]["deployments"]:
        if deployment["name"] == name:
            return deployment
    raise KeyError(f"no user deployment {name!r} in the values")


def user_deployment_container_context(values: dict[str, Any]) -> dict[str, Any]:
    """The container context the chart gives the code location (DAGSTER_CONTAINER_CONTEXT),
    which its runs and their steps inherit (``includeConfigInLaunchedRuns``)."""
    d = user_deployment(values)
    k8s: dict[str, Any] = {
        "image_pull_policy": d["image"]["pullPolicy"],
        "env_config_maps": [f"{FULLNAME}-{d['name']}-user-env"]
        + [ref["name"] for ref in d.get("envConfigMaps", []) if "name" in ref],
        "namespace": NAMESPACE,
        "service_account_name": f"{FULLNAME}-user-deployments",
        "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
    }
    if d.get("envSecrets"):
        k8s["env_secrets"] = [ref["name"] for ref in d["envSecrets"] if "name" in ref]
    for key, name in [("volumeMounts", "volume_mounts"), ("volumes", "volumes"),
                      ("labels", "labels"), ("resources", "resources")]:  # fmt: skip
        if d.get(key):
            k8s[name] = d[key]
    if isinstance(d.get("env"), list):
        k8s["env"] = d["env"]
    return {"k8s": k8s}


def user_deployment_env(values: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in user_deployment(values).get("env", [])}


def image(values: dict[str, Any]) -> str:
    img = user_deployment(values)["image"]
    return f"{img['repository']}:{img['tag']}"


def step_job(
    values: dict[str, Any],
    executor_config: dict[str, Any],
    step_tags: dict[str, str],
    kubeconfig: Path,
    step_key: str = "detector__atss",
):
    """The Kubernetes Job (a ``V1Job``) that the k8s_job_executor would create for a step
    with ``step_tags``, in a run launched by the values' K8sRunLauncher from the values'
    code location."""
    from dagster import DagsterRun
    from dagster_k8s import K8sRunLauncher, k8s_job_executor
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_k8s_job_name,
        get_user_defined_k8s_config,
    )

    launcher_config = process_config(K8sRunLauncher.config_type(), run_launcher_config(values))
    assert launcher_config.success, launcher_config.errors
    # Outside a cluster: the same launcher, reading a kubeconfig instead (no connection).
    launcher = K8sRunLauncher(
        **{
            **launcher_config.value,
            "load_incluster_config": False,
            "kubeconfig_file": str(kubeconfig),
        }
    )
    processed = process_config(k8s_job_executor.config_schema.config_type, executor_config)
    assert processed.success, processed.errors
    exc = processed.value
    # k8s_job_executor(): the executor's own container context.
    executor_context = K8sContainerContext(
        image_pull_policy=exc.get("image_pull_policy"),
        image_pull_secrets=exc.get("image_pull_secrets"),
        service_account_name=exc.get("service_account_name"),
        env_config_maps=exc.get("env_config_maps"),
        env_secrets=exc.get("env_secrets"),
        env_vars=exc.get("env_vars"),
        volume_mounts=exc.get("volume_mounts"),
        volumes=exc.get("volumes"),
        labels=exc.get("labels"),
        namespace=exc.get("job_namespace"),
        resources=exc.get("resources"),
        scheduler_name=exc.get("scheduler_name"),
        security_context=exc.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(exc.get("step_k8s_config", {})),
    )
    # K8sStepHandler._get_container_context: the run's (launcher, then the code location's
    # container context), then the executor's, then the step's op tags.
    run = DagsterRun(job_name="__ASSET_JOB", run_id="0123abcd-0000-0000-0000-000000000000")
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    context = context.merge(
        K8sContainerContext.create_from_config(user_deployment_container_context(values))
    )
    context = context.merge(executor_context)
    context = context.merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags))
    )
    # launch_step: the job config (the executor's image, else the code location's).
    job_config = context.get_k8s_job_config(exc.get("job_image"), launcher)
    if not job_config.job_image:
        job_config = job_config.with_image(image(values))
    name = f"dagster-step-{get_k8s_job_name(run.run_id, step_key)}"
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": run.job_name, "dagster/op": step_key},
    )
    return job, context.namespace


def write_kubeconfig(path: Path) -> Path:
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return path


def overrides_of(values: dict[str, Any]) -> dict[str, Any]:
    """The profile overrides the code location runs with (CLOTHES_RETRIEVAL_OVERRIDES)."""
    return json.loads(user_deployment_env(values)["CLOTHES_RETRIEVAL_OVERRIDES"])

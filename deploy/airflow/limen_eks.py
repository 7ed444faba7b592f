"""limen's pipeline for teams on Airflow without Liminal (e.g. Amazon MWAA) running tasks on EKS.

KubernetesPodOperator tasks in the limen image share the EFS model store (the `limen-models`
claim from deploy/k8s): `limen train` publishes a candidate; `limen validate --evidence
--shadow-wait` waits while the `limen serve` replicas score live traffic with it beside production
and write their evidence to the `limen-evidence` claim (up to `limen_shadow_wait`, going on as soon
as there are enough samples; no wait for a first production version), then promotes it only if
it passes the quality gate, live-traffic agreement included. A rejected candidate exits 1 and fails the task, leaving
production untouched. The replicas pick a promotion up by themselves.

Set the Airflow Variables `limen_model` (default iris), `limen_data` (default data/iris.csv: a
path in the image or on the store's volume, or s3://…), `limen_label_column`, `limen_image`,
`limen_namespace`, `limen_schedule` (a cron expression, default `0 3 * * *`: nightly at 03:00
UTC), `limen_shadow_wait` (seconds, default 900) and `limen_min_shadow_samples` (default 200
instances scored by both versions; a first production version needs none; a candidate that
failed any shadowed row is refused), or edit the defaults below (deploy/aws/deploy.sh writes
DEFAULT_IMAGE and DEFAULT_NAMESPACE for its stack).

Beside it, two DAGs of the same model:
- `limen_eks_retrain` retrains from production traffic: the servers' inference log
  (`limen_retrain_log`, default /mnt/inference-log where every pod mounts it, or its s3:// copy)
  joined with the ground truth in `limen_retrain_labels` (a CSV of request_id and the label
  column), then the same validate and watch. It runs on `limen_retrain_schedule` (default
  `0 4 * * 0`, Sundays 04:00 UTC) once `limen_retrain_labels` is set, and only when triggered
  before that;
- `limen_eks_drift` checks drift daily (`limen_drift_schedule`, default `0 6 * * *`): `limen
  drift` over the last day of the log fails its task past `limen_max_psi` (default 0.25).

On Amazon MWAA the pods are launched through `kube_config.yaml` next to this file (deploy.sh
uploads it): the execution role's token, mapped by the stack's access entry to the
`limen-pipeline` group, which may run pods in the pipeline namespace only. Elsewhere, Airflow's
own Kubernetes connection (or in-cluster config) is used.
"""

import os
from datetime import datetime, timedelta

from kubernetes.client import models as k8s

try:  # Airflow 3
    from airflow.sdk import DAG, Variable

    def variable(key: str, default: str) -> str:
        return Variable.get(key, default=default)

except ImportError:  # Airflow 2 (MWAA 2.x), whose keyword is default_var
    from airflow import DAG
    from airflow.models import Variable

    def variable(key: str, default: str) -> str:
        return Variable.get(key, default_var=default)


from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

DEFAULT_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/limen:0.1.0"
DEFAULT_NAMESPACE = "ml"
IMAGE = variable("limen_image", DEFAULT_IMAGE)
NAMESPACE = variable("limen_namespace", DEFAULT_NAMESPACE)
SHADOW_WAIT = variable("limen_shadow_wait", "900")
MIN_SHADOW_SAMPLES = variable("limen_min_shadow_samples", "200")
# When the pipeline runs: a cron expression (Airflow Variable `limen_schedule`), nightly at 03:00
# UTC unless set.
SCHEDULE = variable("limen_schedule", "0 3 * * *")
# What it trains: the model, its table (a path in the image or on the store's volume, or
# s3://…), its label column, and, to retrain from the inference log, the ground truth (then
# `limen_data` is the log folder or its s3:// copy).
MODEL = variable("limen_model", "iris")
DATA = variable("limen_data", "data/iris.csv")
LABEL_COLUMN = variable("limen_label_column", "")
# Retraining from the inference log (DAG limen_eks_retrain): the log, the ground truth, and when
# (no schedule until there are labels: a run without them would only fail).
RETRAIN_LOG = variable("limen_retrain_log", "/mnt/inference-log")
RETRAIN_LABELS = variable("limen_retrain_labels", "")
RETRAIN_SCHEDULE = variable("limen_retrain_schedule", "0 4 * * 0") if RETRAIN_LABELS else None
# The daily drift check (DAG limen_eks_drift): when, and the PSI past which it fails.
DRIFT_SCHEDULE = variable("limen_drift_schedule", "0 6 * * *")
MAX_PSI = variable("limen_max_psi", "0.25")
INFERENCE_LOG = "/mnt/inference-log"
STORE = "/mnt/models"
EVIDENCE = "/mnt/evidence"
SERVICE_ACCOUNT = "limen"  # deploy/k8s/serviceaccount.yaml: no API rights, no token mounted
KUBE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kube_config.yaml")
# MWAA: reach the cluster through the uploaded kube config; otherwise Airflow's defaults.
CLUSTER = (
    {"config_file": KUBE_CONFIG, "in_cluster": False, "cluster_context": "aws"}
    if os.path.exists(KUBE_CONFIG)
    else {}
)

store_volume = k8s.V1Volume(
    name="models",
    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="limen-models"),
)
store_mount = k8s.V1VolumeMount(name="models", mount_path=STORE)
evidence_volume = k8s.V1Volume(
    name="evidence",
    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="limen-evidence"),
)
evidence_mount = k8s.V1VolumeMount(name="evidence", mount_path=EVIDENCE, read_only=True)
# The root filesystem is read-only: a table or log read from S3 is staged in /tmp, so size this
# above the largest one the pipeline reads.
scratch_volume = k8s.V1Volume(
    name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="2Gi")
)
scratch_mount = k8s.V1VolumeMount(name="scratch", mount_path="/tmp")
# The servers' inference log (the AWS stack's limen-inference-log claim), read-only: what
# `limen drift` reads, and `limen train --data /mnt/inference-log --labels …` retrains from.
log_volume = k8s.V1Volume(
    name="inference-log",
    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
        claim_name="limen-inference-log", read_only=True
    ),
)
log_mount = k8s.V1VolumeMount(name="inference-log", mount_path=INFERENCE_LOG, read_only=True)
security = k8s.V1SecurityContext(
    run_as_non_root=True,
    run_as_user=10001,
    read_only_root_filesystem=True,
    allow_privilege_escalation=False,
    capabilities=k8s.V1Capabilities(drop=["ALL"]),
    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
)


def limen_task(task_id: str, arguments: list[str], cmds=("limen",), env=None) -> KubernetesPodOperator:
    """A pod running `limen <arguments>` with the store at /mnt/models and the evidence
    (read-only) at /mnt/evidence."""
    return KubernetesPodOperator(
        task_id=task_id,
        name=f"limen-{task_id}",
        namespace=NAMESPACE,
        service_account_name=SERVICE_ACCOUNT,
        automount_service_account_token=False,
        image=IMAGE,
        cmds=list(cmds),
        arguments=arguments,
        env_vars={"MOUNT_PATH": STORE, "LIMEN_LOG_FORMAT": "json", **(env or {})},
        volumes=[store_volume, evidence_volume, scratch_volume, log_volume],
        volume_mounts=[store_mount, evidence_mount, scratch_mount, log_mount],
        container_security_context=security,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "250m", "memory": "64Mi"}, limits={"memory": "512Mi"}
        ),
        get_logs=True,
        on_finish_action="delete_pod",
        **CLUSTER,
    )


def promote_and_watch(train: KubernetesPodOperator) -> None:
    """`train`, then the gate and the watch every flow of the model shares."""
    # The candidate is in shadow on every replica within a poll interval: the gate waits up to
    # SHADOW_WAIT seconds for traffic to score it (none for a first production version).
    validate = limen_task(
        "validate",
        ["validate", "--model", MODEL, "--min-accuracy", "0.9", "--evidence", EVIDENCE,
         "--shadow-wait", f"{SHADOW_WAIT}s"],
        env={"LIMEN_MIN_SHADOW_SAMPLES": MIN_SHADOW_SAMPLES},
    )
    # The new version's live counters across the fleet for 10 minutes; a tripped guardrail
    # rolls it back (reason in the history) and fails the task.
    watch = limen_task("watch", ["watch", MODEL, "--for", "10m"])
    train >> validate >> watch


def limen_dag(dag_id: str, description: str, schedule) -> DAG:
    """A DAG of limen's: one run at a time, no catch-up, no retries (a refusal is an answer)."""
    return DAG(
        dag_id=dag_id,
        description=description,
        start_date=datetime(2026, 1, 1),
        schedule=schedule,
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 0, "execution_timeout": timedelta(minutes=30)},
        tags=["limen"],
    )


with limen_dag(
    "limen_eks", "limen train, validate, then watch, on EKS with the EFS model store", SCHEDULE
) as dag:
    promote_and_watch(
        limen_task(
            "train",
            ["train", "--model", MODEL, "--data", DATA]
            + (["--label-column", LABEL_COLUMN] if LABEL_COLUMN else []),
        )
    )


with limen_dag(
    "limen_eks_retrain",
    "limen train on the inference log and its labels, validate, then watch",
    RETRAIN_SCHEDULE,
) as retrain_dag:
    # The model's logged requests joined with their labels by request_id; without labels the
    # task fails and says so (limen train needs --labels to read a log).
    promote_and_watch(
        limen_task(
            "train",
            ["train", "--model", MODEL, "--data", RETRAIN_LOG]
            + (["--labels", RETRAIN_LABELS] if RETRAIN_LABELS else []),
        )
    )


with limen_dag(
    "limen_eks_drift",
    "limen drift: production's logged inputs against its training data, daily",
    DRIFT_SCHEDULE,
) as drift_dag:
    # PSI per feature over the last day of the servers' inference log: above limen_max_psi the
    # task exits 1 and fails (retrain: DAG limen_eks_retrain); too few logged
    # instances exits 2 and fails too, since no data is not "no drift".
    limen_task(
        "drift",
        ["drift", MODEL, "--log", INFERENCE_LOG, "--since", "24h", "--max-psi", MAX_PSI],
    )

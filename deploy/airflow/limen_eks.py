"""limen's pipeline for teams on Airflow without Liminal (e.g. Amazon MWAA) running tasks on EKS.

Two KubernetesPodOperator tasks in the limen image share the EFS model store (the
`limen-models` claim from deploy/k8s): `limen train` publishes a candidate, then `limen validate`
promotes it only if it passes the quality gate. A rejected candidate exits 1 and fails the task,
leaving production untouched. The `limen serve` replicas pick a promotion up by themselves.

Set the Airflow Variables `limen_image` and `limen_namespace`, or edit the defaults below.
"""

from datetime import datetime, timedelta

from kubernetes.client import models as k8s

try:  # Airflow 3
    from airflow.sdk import DAG, Variable
except ImportError:  # Airflow 2 (MWAA)
    from airflow import DAG
    from airflow.models import Variable

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

IMAGE = Variable.get("limen_image", default="123456789012.dkr.ecr.eu-west-1.amazonaws.com/limen:0.1.0")
NAMESPACE = Variable.get("limen_namespace", default="ml")
STORE = "/mnt/models"

store_volume = k8s.V1Volume(
    name="models",
    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="limen-models"),
)
store_mount = k8s.V1VolumeMount(name="models", mount_path=STORE)
security = k8s.V1SecurityContext(
    run_as_non_root=True,
    run_as_user=10001,
    read_only_root_filesystem=True,
    allow_privilege_escalation=False,
    capabilities=k8s.V1Capabilities(drop=["ALL"]),
)


def limen_task(task_id: str, arguments: list[str]) -> KubernetesPodOperator:
    """A pod running `limen <arguments>` with the store mounted at /mnt/models."""
    return KubernetesPodOperator(
        task_id=task_id,
        name=f"limen-{task_id}",
        namespace=NAMESPACE,
        image=IMAGE,
        cmds=["limen"],
        arguments=arguments,
        env_vars={"MOUNT_PATH": STORE, "LIMEN_LOG_FORMAT": "json"},
        volumes=[store_volume],
        volume_mounts=[store_mount],
        container_security_context=security,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "250m", "memory": "64Mi"}, limits={"memory": "512Mi"}
        ),
        get_logs=True,
        on_finish_action="delete_pod",
    )


with DAG(
    dag_id="limen_eks",
    description="limen train, then limen validate, on EKS with the EFS model store",
    start_date=datetime(2026, 1, 1),
    schedule="0 3 * * *",
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "execution_timeout": timedelta(minutes=30)},
    tags=["limen"],
) as dag:
    train = limen_task("train", ["train", "--model", "iris", "--data", "data/iris.csv"])
    validate = limen_task("validate", ["validate", "--model", "iris", "--min-accuracy", "0.9"])
    train >> validate

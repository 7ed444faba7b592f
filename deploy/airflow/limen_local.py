"""limen's pipeline as two BashOperator tasks on the Airflow worker itself: the same commands as
limen_eks.py, for a laptop, a single-node Airflow, or CI (`airflow dags test limen_local`).

The worker needs `limen` on its PATH and, in its environment, the store (`LIMEN_STORE` or
`MOUNT_PATH`), the model (`LIMEN_MODEL`, default iris) and its data (`LIMEN_DATA`, default
data/iris.csv relative to the worker's directory; `LIMEN_LABEL_COLUMN`, and `LIMEN_LABELS` to
retrain from the inference log). `limen validate` reads the evidence of any `limen serve --evidence` running on the
store from `LIMEN_EVIDENCE` (default ./evidence), waiting up to `LIMEN_SHADOW_WAIT` (a duration
such as `15m`; default none) for those servers to score traffic with the candidate (no wait when
there is no production version to shadow). Once a production version
exists, a candidate needs at least `LIMEN_MIN_SHADOW_SAMPLES` (default 1) instances scored by
both versions: with no server scoring traffic it is refused (set it to 0 to promote on the
offline checks alone). A rejected candidate makes
`limen validate` exit 1, which fails the task. After a promotion, `watch` reads the live servers'
counters for the new version for `LIMEN_WATCH_FOR` (10m) and rolls it back when a guardrail trips
(exit 1 fails the task); a window with fewer than `LIMEN_WATCH_MIN_SAMPLES` (100) instances is
inconclusive and fails it too (0 passes a store no server is reading).
"""

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

with DAG(
    dag_id="limen_local",
    description="limen train, validate, then watch, on the Airflow worker",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "execution_timeout": timedelta(minutes=30)},
    tags=["limen"],
) as dag:
    # append_env: the worker's environment (PATH, LIMEN_STORE, …) reaches limen.
    train = BashOperator(
        task_id="train",
        bash_command="limen train",
        env={"LIMEN_LOG_FORMAT": "json"},
        append_env=True,
    )
    validate = BashOperator(
        task_id="validate",
        bash_command='limen validate --evidence "${LIMEN_EVIDENCE:-evidence}"',
        env={"LIMEN_LOG_FORMAT": "json"},
        append_env=True,
    )
    watch = BashOperator(
        task_id="watch",
        bash_command="limen watch",
        env={"LIMEN_LOG_FORMAT": "json"},
        append_env=True,
    )
    train >> validate >> watch

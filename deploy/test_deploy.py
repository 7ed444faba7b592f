#!/usr/bin/env python3
"""Checks that the deployment files work with the real tools, run by `.ci/run` (see
`deploy/requirements.txt` for the Python side):

1. every Kubernetes manifest validates with `kubernetes-validate --strict`, and
   `kubectl kustomize deploy/k8s` renders (where kubectl exists);
2. every command the manifests, liminal.yml and the Airflow DAGs run is a valid `limen`
   subcommand with valid flags (parsed by limen's own command line), and every probe path is a
   route the server answers with 200;
3. deploy/liminal/liminal.yml loads in Apache Liminal's own config loader, as written;
4. real Airflow runs the local DAG (`airflow dags test limen_local`) on a temporary store: train,
   validate, then a running `limen serve` answers with the new version; and a failing validation
   fails the DAG run, leaving production untouched.

Usage: python deploy/test_deploy.py [path/to/limen]   (default: target/debug/limen)
"""
import http.client
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "k8s")
LIMEN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "limen"))
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def manifests():
    """(file, document) for every Kubernetes object in deploy/k8s."""
    for name in sorted(os.listdir(K8S)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            with open(os.path.join(K8S, name)) as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        yield name, doc


def pod_spec(doc):
    kind = doc["kind"]
    if kind == "Deployment":
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def limen_commands():
    """(where, argv after `limen`) for every limen invocation in the deployment files."""
    found = []
    for name, doc in manifests():
        spec = pod_spec(doc)
        for c in (spec or {}).get("initContainers", []) + (spec or {}).get("containers", []):
            # A container of the limen image running another program (the shadow wait's sleep)
            # is not a limen command.
            overridden = c.get("command") and os.path.basename(c["command"][0]) != "limen"
            if c["image"].split("/")[-1].startswith("limen") and not overridden:
                argv = c.get("command", [])[1:] + c.get("args", [])
                found.append((f"{name} {doc['kind']}/{c['name']}", argv))
    for where, cmd in liminal_commands():
        found.append((where, cmd))
    for where, cmd in airflow_commands():
        found.append((where, cmd))
    return found


def liminal_configs():
    os.environ.setdefault("LIMINAL_STAND_ALONE_MODE", "true")
    os.environ.setdefault("LIMINAL_HOME", tempfile.mkdtemp(prefix="liminal-home-"))
    from liminal.core.config.config import ConfigUtil

    return ConfigUtil(os.path.join(ROOT, "deploy", "liminal")).safe_load(is_render_variables=True)


def liminal_commands():
    for config in liminal_configs():
        for pipeline in config.get("pipelines", []):
            for task in pipeline.get("tasks", []):
                if task.get("cmd"):
                    argv = shlex.split(task["cmd"])
                    if argv[0] == "limen":
                        yield f"liminal.yml {pipeline['pipeline']}/{task['task']}", argv[1:]


def airflow_dagbag():
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=os.path.join(ROOT, "deploy", "airflow"))


def airflow_commands():
    bag = airflow_dagbag()
    check(not bag.import_errors, f"Airflow imports every DAG ({bag.import_errors or 'no errors'})")
    for dag_id, dag in sorted(bag.dags.items()):
        for task in dag.tasks:
            if hasattr(task, "bash_command"):
                argv = shlex.split(task.bash_command)
            elif hasattr(task, "arguments"):
                argv = list(task.cmds or []) + list(task.arguments or [])
            else:
                continue
            if argv and argv[0] == "limen":
                yield f"DAG {dag_id}/{task.task_id}", argv[1:]


def start_server(store):
    out = tempfile.NamedTemporaryFile("w+", delete=False)
    env = dict(os.environ, LIMEN_STORE=store, LIMEN_LOG="error")
    proc = subprocess.Popen([LIMEN, "serve", "--addr", "127.0.0.1:0"], stdout=out, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        with open(out.name) as f:
            for line in f:
                if line.startswith("listening on http://"):
                    port = int(line.strip().rsplit(":", 1)[1])
                    while time.time() < deadline:
                        if get(port, "/ready")[0] == 200:
                            return proc, port
                        time.sleep(0.05)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("limen serve did not become ready")


def get(port, path, method="GET", body=None):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read().decode(), r.getheader("x-model-version")
    except OSError as e:
        return 0, str(e), None


def main():
    # 1. Manifests.
    files = sorted(f for f in os.listdir(K8S) if f.endswith(".yaml") and f != "kustomization.yaml")
    validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    out = subprocess.run([validate, "--strict", *files], cwd=K8S, capture_output=True, text=True)
    check(out.returncode == 0, f"kubernetes-validate --strict {' '.join(files)}\n{out.stdout}{out.stderr}".strip())
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True)
        kinds = sorted({d["kind"] for d in yaml.safe_load_all(out.stdout) if d}) if out.returncode == 0 else []
        check(out.returncode == 0 and len(kinds) == 11 and sum(d["kind"] == "CronJob" for d in yaml.safe_load_all(out.stdout) if d) == 3, f"kubectl kustomize deploy/k8s renders {kinds} {out.stderr.strip()}")
        # The pipeline's steps name no model or table: they read them from the ConfigMap.
        docs = [d for d in yaml.safe_load_all(out.stdout) if d] if out.returncode == 0 else []
        config = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "limen-pipeline"), {})
        steps = [c for d in docs if d["kind"] == "CronJob"
                 for c in d["spec"]["jobTemplate"]["spec"]["template"]["spec"].get("initContainers", [])
                 + d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]]
        reads = all(any(e.get("configMapRef", {}).get("name") == "limen-pipeline" for e in c.get("envFrom", []))
                    for c in steps)
        named = [c["name"] for c in steps if {"iris", "--model", "--data"} & set(c.get("args", []))]
        check(set(config.get("data", {})) >= {"LIMEN_MODEL", "LIMEN_DATA"} and reads and not named,
              f"the CronJobs' steps read the model and its data from ConfigMap limen-pipeline (steps naming them: {named})")
        # Retraining from the log: its own CronJob, suspended until there are labels, its train
        # step reading the servers' log (mounted read-only) and the labels the ConfigMap names.
        retrain = next((d for d in docs if d["metadata"]["name"] == "limen-retrain-from-log"), {})
        pod = retrain.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        first = (pod.get("initContainers") or [{}])[0]
        env = {e["name"]: e for e in first.get("env", [])}
        logs = {v["name"] for v in pod.get("volumes", []) if v.get("persistentVolumeClaim", {}).get("claimName") == "limen-inference-log"}
        mounted = {m["mountPath"] for m in first.get("volumeMounts", []) if m["name"] in logs and m.get("readOnly")}
        check(retrain.get("spec", {}).get("suspend") is True and first.get("args") == ["train"]
              and env.get("LIMEN_DATA", {}).get("value") in mounted
              and env.get("LIMEN_LABELS", {}).get("valueFrom", {}).get("configMapKeyRef", {}).get("key") in config.get("data", {})
              and [c["args"][0] for c in pod.get("initContainers", []) + pod.get("containers", [])] == ["train", "validate", "watch"],
              "limen-retrain-from-log trains on the mounted inference log and the ConfigMap's labels, then validates and watches")
        # Load decides the replicas: an HPA of 2 to 10 that scales down slowly, a PDB that still
        # lets a node drain at its minimum, and no replicas in the Deployment to fight it.
        hpa = next((d for d in docs if d["kind"] == "HorizontalPodAutoscaler"), {}).get("spec", {})
        pdb = next((d for d in docs if d["kind"] == "PodDisruptionBudget"), {}).get("spec", {})
        deployment = next((d for d in docs if d["kind"] == "Deployment"), {}).get("spec", {})
        check(hpa.get("scaleTargetRef", {}).get("name") == "limen" and hpa.get("minReplicas") == 2
              and hpa.get("maxReplicas") == 10
              and hpa.get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 0) >= 300
              and pdb.get("minAvailable", 99) < hpa.get("minReplicas", 0) and "replicas" not in deployment,
              "an HPA scales limen from 2 to 10 (slow down), the PDB fits its minimum, the Deployment leaves it the count")
        with open(os.path.join(K8S, "keda", "scaledobject.yaml")) as f:
            keda = yaml.safe_load(f)
        trigger = keda["spec"]["triggers"][0]
        check(keda["kind"] == "ScaledObject" and keda["spec"]["scaleTargetRef"]["name"] == "limen"
              and "limen_http_requests_total" in trigger["metadata"]["query"]
              and float(trigger["metadata"]["threshold"]) > 0,
              "the KEDA recipe scales limen on its own request counter")
        # Locked down: only labelled namespaces and pods reach the servers, on their one port.
        policy = next((d for d in docs if d["kind"] == "NetworkPolicy"), {}).get("spec", {})
        server = deployment.get("template", {}).get("metadata", {}).get("labels", {})
        namespace = next((d for d in docs if d["kind"] == "Namespace"), {})
        sources = [src for rule in policy.get("ingress", []) for src in rule.get("from", [])]
        check(policy.get("podSelector", {}).get("matchLabels") == server and policy.get("policyTypes") == ["Ingress"]
              and sources and all(set(src) <= {"namespaceSelector", "podSelector"} for src in sources)
              and namespace.get("metadata", {}).get("labels", {}).get("limen.io/client") == "true",
              "a NetworkPolicy admits only namespaces and pods labelled limen.io/client to the servers")
        container = deployment["template"]["spec"]["containers"][0] if deployment else {}
        check("--model" not in container.get("args", [])
              and any(e["name"] == "LIMEN_DEFAULT_MODEL" for e in container.get("env", [])),
              "the servers serve every model in the store; plain /predict answers for the pipeline's model")
        # The HTTPS overlay: the base, an ALB Ingress with TLS, the load balancer admitted, tokens on.
        out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "deploy", "ingress")], capture_output=True, text=True)
        shown = [d for d in yaml.safe_load_all(out.stdout) if d] if out.returncode == 0 else []
        path = os.path.join(tempfile.mkdtemp(prefix="limen-ingress-"), "rendered.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(shown, f)
        valid = subprocess.run([validate, "--strict", path], capture_output=True, text=True)
        check(out.returncode == 0 and valid.returncode == 0 and len(shown) == len(docs) + 2,
              "kubectl kustomize deploy/ingress renders and validates strictly"
              + (f"\n{out.stderr.strip()}{valid.stdout}{valid.stderr}" if out.returncode or valid.returncode else ""))
        ingress = next((d for d in shown if d["kind"] == "Ingress"), {})
        notes = ingress.get("metadata", {}).get("annotations", {})
        check(ingress.get("spec", {}).get("ingressClassName") == "alb" and ingress["spec"].get("tls")
              and notes.get("alb.ingress.kubernetes.io/certificate-arn", "").startswith("arn:aws:acm:")
              and notes.get("alb.ingress.kubernetes.io/listen-ports") == '[{"HTTPS": 443}]'
              and notes.get("alb.ingress.kubernetes.io/healthcheck-path") == "/ready",
              "the Ingress is HTTPS only, with an ACM certificate, and checks /ready")
        served = next((d for d in shown if d["kind"] == "Deployment"), {})
        spec = served.get("spec", {}).get("template", {}).get("spec", {})
        env = {e["name"]: e.get("value", "") for e in spec.get("containers", [{}])[0].get("env", [])}
        secret = next((v["secret"] for v in spec.get("volumes", []) if "secret" in v), {})
        groups = {g.split("=", 1)[0] for g in env.get("LIMEN_AUTH_TOKEN_FILE", "").split(",") if g}
        check(groups == {"inference", "metadata", "metrics"} and secret.get("optional") is False
              and len(env) == len(container.get("env", [])) + 1,
              "behind the load balancer every route group asks for a token from Secret limen-auth, which must exist")
    elif os.environ.get("LIMEN_REQUIRE_KUBECTL"):
        check(False, "kubectl is required to render the manifests (LIMEN_REQUIRE_KUBECTL)")
    else:
        print("skip  kubectl kustomize (no kubectl on this machine)")

    # 2. Commands and probes.
    commands = limen_commands()
    check(len(commands) >= 7, f"found {len(commands)} limen commands in manifests, liminal.yml and DAGs")
    for where, argv in commands:
        out = subprocess.run([LIMEN, *argv, "--help"], capture_output=True, text=True)
        check(out.returncode == 0 and argv[0] in ("serve", "train", "validate", "watch", "drift"),
              f"{where}: limen {' '.join(argv)} {out.stderr.strip()}")
    validates = [where for where, argv in commands if argv and argv[0] == "validate"]
    without = [where for where, argv in commands if argv and argv[0] == "validate" and "--evidence" not in argv]
    check(len(validates) >= 3 and not without,
          f"every pipeline's validate reads the shadow evidence ({len(validates)} found; without --evidence: {without})")
    store = tempfile.mkdtemp(prefix="limen-deploy-")
    env = dict(os.environ, LIMEN_STORE=store, LIMEN_LOG="error")
    subprocess.run([LIMEN, "train", "--cv-folds", "0"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([LIMEN, "validate"], cwd=ROOT, env=env, check=True, capture_output=True)
    proc, port = start_server(store)
    try:
        for name, doc in manifests():
            spec = pod_spec(doc)
            for c in (spec or {}).get("containers", []):
                ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if probe in c:
                        path = c[probe]["httpGet"]["path"]
                        status = get(port, path)[0]
                        check(status == 200, f"{name} {probe} GET {path} -> {status}")
                        check(ports.get(c[probe]["httpGet"]["port"]) == 8080 or c[probe]["httpGet"]["port"] == 8080,
                              f"{name} {probe} targets the serving port 8080")
                if "--addr" in c.get("args", []):
                    addr = c["args"][c["args"].index("--addr") + 1]
                    check(addr.endswith(":8080") and 8080 in ports.values(), f"{name}: --addr {addr} matches containerPort")
            if doc["kind"] == "Service":
                check(doc["spec"]["ports"][0]["port"] == 80, "Service maps port 80 (curl <service>/predict)")
    finally:
        proc.terminate()
        proc.wait()

    # 3. Liminal.
    configs = liminal_configs()
    pipeline = configs[0]["pipelines"][0]
    tasks = {t["task"]: t for t in pipeline["tasks"]}
    check(pipeline["pipeline"] == "my_datascience_pipeline" and {"train", "validate", "watch"} <= tasks.keys(),
          "Liminal's loader reads my_datascience_pipeline with its train, validate and watch tasks")
    check(all(tasks[t].get("env_vars", {}).get("MOUNT_PATH") for t in ("train", "validate", "watch")),
          "Liminal keeps MOUNT_PATH (env_vars) on the train, validate and watch tasks")
    check([s["name"] for s in configs[0].get("services", [])] == ["my_datascience_server"],
          "Liminal reads the my_datascience_server service")
    models = {tasks[t].get("env_vars", {}).get("LIMEN_MODEL") for t in ("train", "validate", "watch")}
    check(len(models) == 1 and None not in models and "LIMEN_DATA" in tasks["train"].get("env_vars", {}),
          f"Liminal's tasks take the model (one name: {models}) and the data from env_vars")
    # Liminal's loader adds its own start and end tasks, which run nothing.
    pipelines = {p["pipeline"]: {t["task"]: t for t in p["tasks"] if t.get("cmd")} for p in configs[0]["pipelines"]}
    retrain, drift = pipelines.get("limen_retrain_from_log", {}), pipelines.get("limen_drift", {})
    every = [t for tasks_ in pipelines.values() for t in tasks_.values()]
    check(list(retrain) == ["train", "validate", "watch"] and "--data /mnt/inference-log" in retrain["train"]["cmd"]
          and retrain["train"]["env_vars"].get("LIMEN_LABELS")
          and any(m["path"] == "/mnt/inference-log" for m in retrain["train"].get("mounts", []))
          and list(drift) == ["drift"] and "--max-psi" in drift["drift"]["cmd"]
          and {t["env_vars"].get("LIMEN_MODEL") for t in every} == models,
          "liminal.yml has a retrain-from-log pipeline and a daily drift check, of the same model")

    # The EKS DAG takes the model, the data, the labels and the schedule as Airflow Variables
    # (read from AIRFLOW_VAR_* here), rendered into the pods' arguments.
    def schedule(dag):
        when = getattr(dag, "schedule", None) or getattr(dag, "schedule_interval", None)
        return None if when is None else str(when)

    def dags_with(variables):
        os.environ.update({f"AIRFLOW_VAR_{k}": v for k, v in variables.items()})
        try:
            return airflow_dagbag().dags
        finally:
            for k in variables:
                os.environ.pop(f"AIRFLOW_VAR_{k}", None)

    def arguments(dag):
        args = {t.task_id: list(t.arguments or []) for t in dag.tasks}
        train = args.get("train", [])
        return args, {train[i]: train[i + 1] for i in range(len(train) - 1)}

    variables = {"LIMEN_MODEL": "churn", "LIMEN_DATA": "s3://tables/churn/", "LIMEN_LABEL_COLUMN": "churned",
                 "LIMEN_SCHEDULE": "30 1 * * *", "LIMEN_RETRAIN_LABELS": "s3://tables/labels.csv",
                 "LIMEN_RETRAIN_SCHEDULE": "0 5 * * 1"}
    dags = dags_with(variables)
    args, pairs = arguments(dags["limen_eks"])
    check(pairs.get("--model") == "churn" and pairs.get("--data") == "s3://tables/churn/"
          and pairs.get("--label-column") == "churned" and "--labels" not in pairs
          and "churn" in args.get("watch", []) and "churn" in args.get("validate", [])
          and schedule(dags["limen_eks"]) == "30 1 * * *",
          f"limen_eks renders the model, data, label column and schedule Variables into its pods ({args})")
    args, pairs = arguments(dags["limen_eks_retrain"])
    check(pairs.get("--model") == "churn" and pairs.get("--data") == "/mnt/inference-log"
          and pairs.get("--labels") == "s3://tables/labels.csv" and list(args) == ["train", "validate", "watch"]
          and "churn" in args["watch"] and schedule(dags["limen_eks_retrain"]) == "0 5 * * 1",
          f"limen_eks_retrain trains the model on the inference log and its labels, then validates and watches ({args})")
    unlabelled = dags_with({"LIMEN_MODEL": "churn"})["limen_eks_retrain"]
    check(schedule(unlabelled) is None, "without labels the retrain DAG has no schedule (it would only fail)")

    # 4. Airflow runs the local DAG for real.
    airflow_home = tempfile.mkdtemp(prefix="airflow-home-")
    dag_store = tempfile.mkdtemp(prefix="limen-airflow-")
    af_env = dict(
        os.environ,
        AIRFLOW_HOME=airflow_home,
        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(ROOT, "deploy", "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        LIMEN_STORE=dag_store,
        LIMEN_DATA=os.path.join(ROOT, "data", "iris.csv"),
        # No server reads this store: nothing to watch, and no traffic needed for a pass.
        LIMEN_WATCH_FOR="0s",
        LIMEN_WATCH_MIN_SAMPLES="0",
        PATH=os.path.dirname(LIMEN) + os.pathsep + os.environ["PATH"],
    )
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow, "db", "migrate"], env=af_env, check=True, capture_output=True)
    out = subprocess.run([airflow, "dags", "test", "limen_local"], env=af_env, capture_output=True, text=True)
    production = open(os.path.join(dag_store, "iris", "production")).read().strip() if os.path.exists(
        os.path.join(dag_store, "iris", "production")) else None
    check(out.returncode == 0 and production, f"airflow dags test limen_local: train then validate promote {production}"
          + ("" if out.returncode == 0 else "\n" + out.stdout[-3000:]))
    proc, port = start_server(dag_store)
    try:
        status, body, version = get(port, "/predict", "POST", '{"petal_width": "2.1"}')
        check(status == 200 and version == production, f"limen serve answers with the DAG's version ({version})")
    finally:
        proc.terminate()
        proc.wait()
    out = subprocess.run([airflow, "dags", "test", "limen_local"], env=dict(af_env, LIMEN_MIN_ACCURACY="0.999"),
                         capture_output=True, text=True)
    still = open(os.path.join(dag_store, "iris", "production")).read().strip()
    check(out.returncode != 0 and "validation failed" in out.stdout + out.stderr and still == production,
          "a failing validation fails the Airflow DAG run and leaves production untouched")

    print(f"\n{len(failures)} failure(s)" if failures else "\nall deployment checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

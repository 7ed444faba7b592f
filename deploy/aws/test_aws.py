#!/usr/bin/env python3
"""Checks deploy/aws without an AWS account, run by `.ci/run` (in target/deploy-venv, which has
Airflow to load the rendered DAG):

1. deploy.sh runs against stubbed `aws`, `kubectl` and `docker` (first on PATH; they answer
   like the real tools from a state file and log every call): it deploys the stack, pushes the
   image, renders and applies the overlay, uploads the DAG, its kube config and requirements.txt,
   starts MWAA with that requirements version, and prints the two curl lines. A second run with
   the same state rebuilds nothing and keeps the requirements version (safe to re-run).
2. `deploy.sh --dry-run` calls none of the tools and prints exactly the commands the real run
   ran, in order (the stack's outputs as @Name@ placeholders); so does `--teardown --dry-run`.
3. The rendered overlay passes `kubernetes-validate --strict`, and names agree across the stack (parameters, access points, outputs, access entry), the rendered
   overlay (`kubectl kustomize`, where kubectl exists), the rendered DAG, deploy/k8s and
   liminal.yml: claims and access points, mount paths, image, namespace, service account, the
   pipeline group, the uid, and the Airflow version of the requirements' constraints.

Usage: python deploy/aws/test_aws.py
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REAL_KUBECTL = shutil.which("kubectl")
failures = []

OUTPUTS = {
    "Region": "eu-west-1",
    "ClusterName": "limen",
    "ClusterEndpoint": "https://ABCDEF0123456789.gr7.eu-west-1.eks.amazonaws.com",
    "ClusterCertificateAuthority": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
    "PipelineNamespace": "ml",
    "PipelineGroup": "limen-pipeline",
    "FileSystemId": "fs-0a1b2c3d4e5f60718",
    "ModelsAccessPointId": "fsap-0aaaaaaaaaaaaaaa1",
    "EvidenceAccessPointId": "fsap-0bbbbbbbbbbbbbbb2",
    "InferenceLogAccessPointId": "fsap-0ccccccccccccccc3",
    "RepositoryUri": "210987654321.dkr.ecr.eu-west-1.amazonaws.com/limen",
    "BucketName": "airflow-limen-airflow-210987654321-eu-west-1",
}
AIRFLOW_OUTPUTS = {
    "AirflowEnvironmentName": "limen-airflow",
    "AirflowUiUrl": "https://0123abcd-4567-89ef.c2.eu-west-1.airflow.amazonaws.com",
}
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
# Which access point backs which claim, as the template's outputs describe them.
CLAIMS = {
    "limen-models": "ModelsAccessPointId",
    "limen-evidence": "EvidenceAccessPointId",
    "limen-inference-log": "InferenceLogAccessPointId",
}

# One script stands in for aws, kubectl and docker (by the name it is called as).
STUB = r'''#!PYTHON
import json, os, sys
POINTS = {"ModelsAccessPointId": "/models", "EvidenceAccessPointId": "/evidence",
          "InferenceLogAccessPointId": "/inference-log"}
tool, argv = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps([tool] + argv) + "\n")
STATE = os.environ["STUB_STATE"]
state = json.load(open(STATE))
def save():
    with open(STATE, "w") as f:
        json.dump(state, f)
def flag(name):
    return argv[argv.index(name) + 1]
def fail(message, code=254):
    print(message, file=sys.stderr)
    sys.exit(code)
if tool == "aws":
    if argv[:1] == ["--region"]:
        argv = argv[2:]
    cmd = argv[:2]
    stacks = state.setdefault("stacks", {})
    if cmd == ["cloudformation", "deploy"]:
        if "DeployAirflow=true" in argv:
            state["airflow"] = True
        name = flag("--stack-name")
        params = dict(p.split("=", 1) for p in argv[argv.index("--parameter-overrides") + 1:]) \
            if "--parameter-overrides" in argv else {}
        if flag("--template-file") == "deploy/aws/existing.yaml":
            if stacks.get(name) == params:
                state["unchanged"] = state.get("unchanged", 0) + 1
                print(f"No changes to deploy. Stack {name} is up to date")
            # What the stack holds shows up in the account, as in AWS.
            issuer = params["OidcIssuer"].split("//", 1)[1]
            if params["CreateOidcProvider"] == "true" and not any(a.endswith(issuer) for a in state["providers"]):
                state["providers"].append(f"arn:aws:iam::210987654321:oidc-provider/{issuer}")
            if params["CreateEfsCsiDriver"] == "true" and "efs.csi.aws.com" not in state["csidrivers"]:
                state["csidrivers"].append("efs.csi.aws.com")
            for key, root in POINTS.items():
                if params[key] == "" and root not in dict(state["access_points"]):
                    state["access_points"].append([root, "fsap-stack" + root.replace("/", "-")])
            if params["CreateRepository"] == "true" and params["RepositoryName"] not in state["repositories"]:
                state["repositories"].append(params["RepositoryName"])
        stacks[name] = params
        save()
    elif cmd == ["cloudformation", "describe-stacks"]:
        name = flag("--stack-name")
        if "Parameters" in flag("--query"):
            if name not in stacks:
                fail(f"An error occurred (ValidationError) when calling the DescribeStacks operation: Stack with id {name} does not exist")
            for key, value in stacks[name].items():
                print(f"{key}\t{value}")
            save()
            sys.exit(0)
        if stacks.get(name, {}).get("FileSystemId"):
            params, made = stacks[name], dict(state["access_points"])
            outputs = {"ClusterName": params["ClusterName"], "PipelineNamespace": params["PipelineNamespace"],
                       "FileSystemId": params["FileSystemId"],
                       "RepositoryUri": f"210987654321.dkr.ecr.eu-west-1.amazonaws.com/{params['RepositoryName']}",
                       **{key: params[key] or made[root] for key, root in POINTS.items()}}
        else:
            outputs = dict(state["outputs"], **(state["airflow_outputs"] if state.get("airflow") else {}))
        for key, value in outputs.items():
            print(f"{key}\t{value}")
    elif cmd == ["eks", "describe-cluster"]:
        print(state["issuer"])
    elif cmd == ["efs", "describe-mount-targets"]:
        print(state.get("mount_targets", 2))
    elif cmd == ["efs", "describe-access-points"]:
        for root, ident in state["access_points"]:
            print(f"{root}\t{ident}")
    elif cmd == ["iam", "list-open-id-connect-providers"]:
        print("\t".join(state["providers"]))
    elif cmd == ["ecr", "describe-repositories"]:
        if flag("--repository-names") not in state["repositories"]:
            fail("An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories operation")
        print("{}")
    elif cmd == ["ecr", "describe-images"]:
        tag = flag("--image-ids").split("=", 1)[1]
        if tag not in state["images"]:
            fail(f"An error occurred (ImageNotFoundException): image tag '{tag}' does not exist")
        print("{}")
    elif cmd == ["ecr", "get-login-password"]:
        print("ecr-token")
    elif cmd == ["s3api", "head-object"]:
        if not state.get("requirements"):
            fail("An error occurred (404) when calling the HeadObject operation: Not Found")
        print("\t".join(state["requirements"]))
    elif cmd == ["s3api", "put-object"]:
        sha = flag("--metadata").split("=", 1)[1]
        state["puts"] = state.get("puts", 0) + 1
        state["requirements"] = [sha, f"version-{state['puts']}"]
        save()
        print(state["requirements"][1])
    elif cmd == ["s3api", "list-object-versions"]:
        print("dags/limen_eks.py\tv1\nrequirements.txt\tv2")
elif tool == "docker":
    if argv[:1] == ["login"] and sys.stdin.read().strip() != "ecr-token":
        fail("docker login: wrong password on stdin", 1)
    if argv[:1] == ["push"]:
        state["images"].append(argv[1].rsplit(":", 1)[1])
        save()
elif tool == "kubectl":
    if "get" in argv and "csidriver" in argv:
        if argv[-1] not in state["csidrivers"]:
            fail(f'Error from server (NotFound): csidrivers.storage.k8s.io "{argv[-1]}" not found', 1)
    elif "get" in argv and "job" in argv:
        if argv[-1] not in state["jobs"]:
            fail(f'Error from server (NotFound): jobs.batch "{argv[-1]}" not found', 1)
    elif "create" in argv and "job" in argv:
        state["jobs"].append(argv[argv.index("job") + 1])
        save()
'''


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) kept as {"Ref": ...} etc."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _tag)


def load_template():
    with open(os.path.join(HERE, "limen.yaml")) as f:
        return yaml.load(f, Loader=CfnLoader)


class Sandbox:
    """A temp dir with the stub tools first on PATH, a state file and a call log."""

    def __init__(self, **state):
        self.dir = tempfile.mkdtemp(prefix="limen-aws-")
        self.bin = os.path.join(self.dir, "bin")
        os.mkdir(self.bin)
        stub = os.path.join(self.bin, "stub")
        with open(stub, "w") as f:
            f.write(STUB.replace("PYTHON", sys.executable, 1))
        os.chmod(stub, 0o755)
        for tool in ("aws", "kubectl", "docker"):
            os.symlink(stub, os.path.join(self.bin, tool))
        self.state = os.path.join(self.dir, "state.json")
        self.log = os.path.join(self.dir, "calls.jsonl")
        self.out = os.path.join(self.dir, "rendered")
        with open(self.state, "w") as f:
            json.dump({"outputs": OUTPUTS, "airflow_outputs": AIRFLOW_OUTPUTS, "images": [], "jobs": [],
                       "issuer": ISSUER, "providers": [], "csidrivers": [], "access_points": [],
                       "repositories": [], **state}, f)

    def state_now(self):
        with open(self.state) as f:
            return json.load(f)

    def run(self, *args, tools=True):
        open(self.log, "w").close()
        path = f"{self.bin}:{os.environ['PATH']}" if tools else self.without_tools()
        env = dict(os.environ, PATH=path, STUB_STATE=self.state, STUB_LOG=self.log)
        env.pop("AWS_REGION", None)
        proc = subprocess.run(
            [os.path.join(HERE, "deploy.sh"), "--region", "eu-west-1", "--out", self.out,
             *(a for a in args if a != "--no-cidr")]
            # Every run states who may reach the API, but a teardown and the run that tests
            # its absence.
            + ([] if {"--teardown", "--no-cidr", "--cluster"} & set(args) else ["--api-access-cidr", "203.0.113.7/32"]),
            capture_output=True, text=True, env=env, cwd=self.dir, timeout=120,
        )
        with open(self.log) as f:
            calls = [json.loads(line) for line in f]
        return proc, calls

    def without_tools(self):
        """A PATH of this machine's programs but aws, kubectl, docker and git (and the stubs)."""
        farm = os.path.join(self.dir, "no-tools")
        if not os.path.isdir(farm):
            os.mkdir(farm)
            for folder in os.environ["PATH"].split(os.pathsep):
                if folder == self.bin or not os.path.isdir(folder):
                    continue
                for name in os.listdir(folder):
                    target = os.path.join(farm, name)
                    if name not in ("aws", "kubectl", "docker", "git") and not os.path.lexists(target):
                        os.symlink(os.path.join(folder, name), target)
        return farm


def printed_commands(stdout):
    """The commands a deploy.sh run printed (`+ cmd`), a pipeline split into its commands."""
    commands = []
    for line in stdout.splitlines():
        if line.startswith("+ "):
            argv = shlex.split(line[2:])
            while "|" in argv:
                i = argv.index("|")
                commands.append(argv[:i])
                argv = argv[i + 1:]
            commands.append(argv)
    return commands


def in_pipeline_order(calls):
    """The calls with a pipeline's commands in written order (both ends of `aws ecr
    get-login-password | docker login` start at once, so either may log first)."""
    calls = list(calls)
    for i in range(len(calls) - 1):
        if calls[i][:2] == ["docker", "login"] and calls[i + 1][3:5] == ["ecr", "get-login-password"]:
            calls[i], calls[i + 1] = calls[i + 1], calls[i]
    return calls


def same_command(printed, called):
    """A printed dry-run command matches a real call, placeholders (@Name@) aside."""
    return len(printed) == len(called) and all(p == c or "@" in p for p, c in zip(printed, called))


def kustomize(directory):
    out = subprocess.run([REAL_KUBECTL, "kustomize", directory], capture_output=True, text=True)
    check(out.returncode == 0, f"kubectl kustomize {directory} {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d] if out.returncode == 0 else []


def validate(rendered, scratch):
    """kubernetes-validate --strict on every object the overlay renders."""
    path = os.path.join(scratch, "rendered.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(rendered, f)
    tool = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    out = subprocess.run([tool, "--strict", path], capture_output=True, text=True)
    check(out.returncode == 0 and len(rendered) >= 12,
          f"kubernetes-validate --strict: the {len(rendered)} rendered objects\n{out.stdout}{out.stderr}".strip()
          if out.returncode else f"kubernetes-validate --strict: the {len(rendered)} rendered objects")


def pod_spec(doc):
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def load_dags(folder):
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:
        from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=folder)


def check_template(template):
    params = template["Parameters"]
    resources = template["Resources"]
    outputs = template["Outputs"]
    need = {"ClusterName", "FileSystemId", "ModelsAccessPointId", "EvidenceAccessPointId",
            "InferenceLogAccessPointId", "RepositoryUri", "BucketName", "AirflowUiUrl"}
    check(need <= outputs.keys(), f"the stack outputs {sorted(need)}")
    check(set(OUTPUTS) | set(AIRFLOW_OUTPUTS) == set(outputs), "the stub answers with exactly the stack's outputs")
    check({"ClusterName", "NodeInstanceType", "EnvironmentName"} <= params.keys()
          and all("Default" in params[p] for p in ("ClusterName", "NodeInstanceType", "EnvironmentName")),
          "parameters cluster name, node instance type and environment name, with defaults")
    points = {r["Properties"]["AccessPointTags"][0]["Value"]: r["Properties"]
              for r in resources.values() if r["Type"] == "AWS::EFS::AccessPoint"}
    check(set(points) == set(CLAIMS), f"an access point per claim: {sorted(points)}")
    for claim, point in points.items():
        check(point["PosixUser"] == {"Uid": "10001", "Gid": "10001"}
              and point["RootDirectory"]["CreationInfo"]["OwnerUid"] == "10001",
              f"access point {claim} pins uid/gid 10001 and owns its root {point['RootDirectory']['Path']}")
    for claim, key in CLAIMS.items():
        ref = outputs[key]["Value"]
        target = ref.get("Fn::GetAtt", "").split(".")[0]
        check(resources.get(target, {}).get("Properties", {}).get("AccessPointTags", [{}])[0].get("Value") == claim,
              f"output {key} is the access point of claim {claim}")
    entry = next(r for r in resources.values() if r["Type"] == "AWS::EKS::AccessEntry")
    check(entry["Properties"]["KubernetesGroups"] == [outputs["PipelineGroup"]["Value"]] == [OUTPUTS["PipelineGroup"]],
          "the access entry maps the MWAA role to the pipeline group the outputs name")
    mwaa = next(r for r in resources.values() if r["Type"] == "AWS::MWAA::Environment")
    subnets = mwaa["Properties"]["NetworkConfiguration"]["SubnetIds"]
    check(all(s["Ref"].startswith("Private") for s in subnets) and len(subnets) == 2, "MWAA runs in the two private subnets")
    with open(os.path.join(HERE, "mwaa-requirements.txt")) as f:
        constraints = f.read()
    version = params["AirflowVersion"]["Default"]
    check(f"constraints-{version}/" in constraints and "apache-airflow-providers-cncf-kubernetes" in constraints,
          f"mwaa-requirements.txt pins the constraints of Airflow {version} and adds the Kubernetes provider")
    cni = [r["Properties"] for r in resources.values()
           if r["Type"] == "AWS::EKS::Addon" and r["Properties"]["AddonName"] == "vpc-cni"]
    check(len(cni) == 1 and json.loads(cni[0].get("ConfigurationValues", "{}")).get("enableNetworkPolicy") == "true",
          "the VPC CNI add-on enforces network policies (deploy/k8s/networkpolicy.yaml)")
    bucket = resources["Bucket"]["Properties"]["BucketName"]["Fn::Sub"]
    check(bucket.startswith("airflow-"), "the bucket's name starts with airflow- (MWAA requires it)")
    return params


def check_names(params, rendered, dag_folder):
    """Names agree across the stack, the rendered overlay, the rendered DAG and liminal.yml."""
    namespace, image = OUTPUTS["PipelineNamespace"], None
    with open(os.path.join(ROOT, "deploy", "k8s", "kustomization.yaml")) as f:
        base = yaml.safe_load(f)
    check(base["namespace"] == params["PipelineNamespace"]["Default"] == namespace,
          f"namespace {namespace}: the stack's default, deploy/k8s")
    check(base["images"][0]["newName"].rsplit("/", 1)[1] == params["RepositoryName"]["Default"],
          "deploy/k8s's image is in a repository named as the stack's RepositoryName")

    pvcs = {d["metadata"]["name"] for d in rendered if d["kind"] == "PersistentVolumeClaim"}
    pvs = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "PersistentVolume"}
    for claim, key in CLAIMS.items():
        handle = pvs.get(claim, {}).get("spec", {}).get("csi", {}).get("volumeHandle")
        check(claim in pvcs and handle == f"{OUTPUTS['FileSystemId']}::{OUTPUTS[key]}",
              f"claim {claim} is bound to {handle} (the stack's file system and {key})")
    namespaced = [d for d in rendered if d["kind"] not in ("PersistentVolume", "Namespace")]
    check(all(d["metadata"].get("namespace") == namespace for d in namespaced),
          f"every namespaced object is in {namespace}")
    check([d["metadata"]["name"] for d in rendered if d["kind"] == "Namespace"] == [namespace],
          f"the overlay creates namespace {namespace}")
    binding = next((d for d in rendered if d["kind"] == "RoleBinding"), {})
    check([s["name"] for s in binding.get("subjects", [])] == [OUTPUTS["PipelineGroup"]],
          f"the RoleBinding grants the Role to group {OUTPUTS['PipelineGroup']} only")
    accounts = {d["metadata"]["name"] for d in rendered if d["kind"] == "ServiceAccount"}
    mounts_by_claim = {}
    for doc in rendered:
        spec = pod_spec(doc)
        if not spec:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        check(spec.get("serviceAccountName") in accounts and spec.get("automountServiceAccountToken") is False,
              f"{where} runs as service account {spec.get('serviceAccountName')} without its token")
        check(spec["securityContext"]["runAsUser"] == 10001, f"{where} runs as uid 10001, the access points' uid")
        # Claims on EFS; other volumes (the optional auth Secret) are not the stack's.
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in spec.get("volumes", []) if "persistentVolumeClaim" in v}
        for c in spec.get("initContainers", []) + spec["containers"]:
            images = f"{OUTPUTS['RepositoryUri']}:"
            check(c["image"].startswith(images), f"{where}/{c['name']} runs {c['image']}")
            image = c["image"]
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            for m in c.get("volumeMounts", []):
                if m["name"] not in claims:
                    continue
                claim = claims[m["name"]]
                check(claim in pvcs, f"{where}/{c['name']} mounts claim {claim}, which the overlay has")
                path, sub = m["mountPath"], m.get("subPath")
                if sub:
                    # A folder of the claim (the servers' .fleet) at its place below the mount.
                    check(path.endswith("/" + sub), f"{where}/{c['name']} mounts {claim}'s {sub} at {path}, below the claim's own mount")
                    path = path[: -len(sub) - 1]
                mounts_by_claim.setdefault(claim, set()).add(path)
            if "MOUNT_PATH" in env:
                store = [m["mountPath"] for m in c.get("volumeMounts", [])
                         if claims.get(m["name"]) == "limen-models" and not m.get("subPath")]
                check(store == [env["MOUNT_PATH"]], f"{where}/{c['name']}: MOUNT_PATH {env['MOUNT_PATH']} is the store's mount")
    check(all(len(paths) == 1 for paths in mounts_by_claim.values()),
          f"each claim has one mount path everywhere: {sorted((k, sorted(v)) for k, v in mounts_by_claim.items())}")

    # The rendered DAG, as MWAA will load it: image, namespace, claims, mounts, account, kube config.
    bag = load_dags(dag_folder)
    check(not bag.import_errors and "limen_eks" in bag.dags, f"the rendered DAG loads ({bag.import_errors or 'no errors'})")
    for task in bag.dags.get("limen_eks").tasks if "limen_eks" in bag.dags else []:
        where = f"DAG limen_eks/{task.task_id}"
        check(task.image == image, f"{where} runs the overlay's image {task.image}")
        check(task.namespace == namespace, f"{where} runs in {task.namespace}")
        check(task.service_account_name in accounts, f"{where} runs as service account {task.service_account_name}")
        check(task.config_file == os.path.join(dag_folder, "kube_config.yaml") and task.in_cluster is False,
              f"{where} reaches the cluster through the uploaded kube config")
        vols = {v.name: v.persistent_volume_claim.claim_name for v in task.volumes if v.persistent_volume_claim}
        for m in task.volume_mounts:
            if m.name not in vols:
                # Not a claim: the pod's own scratch (an emptyDir for data staged from S3).
                check(m.mount_path == "/tmp", f"{where} mounts its scratch at {m.mount_path}")
                continue
            check(m.mount_path in mounts_by_claim.get(vols[m.name], set()),
                  f"{where} mounts {vols[m.name]} at {m.mount_path}, as the servers do")
        if task.security_context is None:
            user = task.container_security_context.run_as_user
            check(user == 10001, f"{where} runs as uid {user}")
    with open(os.path.join(dag_folder, "kube_config.yaml")) as f:
        kube = yaml.safe_load(f)
    user = kube["users"][0]["user"]["exec"]
    check(kube["clusters"][0]["cluster"]["server"] == OUTPUTS["ClusterEndpoint"]
          and user["command"] == "aws" and OUTPUTS["ClusterName"] in user["args"] and "get-token" in user["args"],
          "the kube config points at the stack's cluster with an aws eks get-token user")

    # liminal.yml: the same claims, account, namespace, repository, and mount paths that agree
    # with its own MOUNT_PATH and --evidence.
    with open(os.path.join(ROOT, "deploy", "liminal", "liminal.yml")) as f:
        liminal = yaml.safe_load(f)
    volumes = {v["volume"]: v["claim_name"] for v in liminal["volumes"]}
    check(set(volumes.values()) <= pvcs, f"liminal.yml's claims {sorted(volumes.values())} are the overlay's")
    executor = next(e for e in liminal["executors"] if e["type"] == "kubernetes")
    check(executor["namespace"] == namespace and executor["service_account_name"] in accounts,
          f"liminal.yml's pods run in {executor['namespace']} as {executor['service_account_name']}")
    for task in liminal["pipelines"][0]["tasks"]:
        where = f"liminal.yml {task['task']}"
        check(task["image"].rsplit(":", 1)[0].rsplit("/", 1)[1] == params["RepositoryName"]["Default"]
              and task.get("executor") == executor["executor"],
              f"{where}: an image of the stack's repository, on the {executor['executor']} executor")
        paths = {volumes[m["volume"]]: m["path"] for m in task.get("mounts", [])}
        if "limen-models" in paths:
            check(task["env_vars"]["MOUNT_PATH"] == paths["limen-models"], f"{where}: MOUNT_PATH is the store's mount")
        if "--evidence" in task.get("cmd", ""):
            evidence = shlex.split(task["cmd"])
            check(paths.get("limen-evidence") == evidence[evidence.index("--evidence") + 1],
                  f"{where}: --evidence is the evidence claim's mount")


FS = "fs-0a1b2c3d4e5f60718"
EXISTING = ("--cluster", "prod_eks", "--file-system", FS, "--namespace", "churn-team")


def rendered_handles(box):
    """The volume handles and namespace deploy.sh rendered into box's kustomization."""
    with open(os.path.join(box.out, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    handles = {}
    for patch in kust["patches"]:
        op = json.loads(patch["patch"])[0]
        if patch["target"]["kind"] == "PersistentVolume":
            handles[patch["target"]["name"]] = op["value"]
    return kust, handles


def check_existing():
    """deploy.sh --cluster: checks, creates only what is missing, a second run creates nothing,
    a dry run needs none of the tools; returns the sandbox of the first case (for rendering)."""
    bare = Sandbox()
    first, calls = bare.run(*EXISTING)
    calls = in_pipeline_order(calls)
    check(first.returncode == 0, f"deploy.sh --cluster into a bare cluster exits 0\n{first.stderr[-2000:]}")
    deploys = [c for c in calls if c[3:5] == ["cloudformation", "deploy"]]
    params = dict(p.split("=", 1) for p in deploys[0][deploys[0].index("--parameter-overrides") + 1:]) if deploys else {}
    check(len(deploys) == 1 and "deploy/aws/existing.yaml" in deploys[0] and "limen-prod-eks" in deploys[0]
          and params.get("OidcIssuer") == ISSUER and params.get("PipelineNamespace") == "churn-team"
          and {k: params.get(k) for k in ("CreateOidcProvider", "CreateEfsCsiDriver", "CreateRepository")}
          == dict.fromkeys(("CreateOidcProvider", "CreateEfsCsiDriver", "CreateRepository"), "true")
          and all(params.get(k) == "" for k in CLAIMS.values()),
          f"a bare cluster gets its own stack (limen-prod-eks) with every missing piece: {params}")
    check(not any(c[3:4] in (["s3"], ["s3api"]) for c in calls) and not any("ApiAccessCidr" in " ".join(c) for c in calls),
          "the existing-cluster path touches no MWAA bucket and no API access")
    kust, handles = rendered_handles(bare)
    check(kust["namespace"] == "churn-team" and kust["resources"][0].endswith("deploy/k8s")
          and handles == {"limen-models": f"{FS}::fsap-stack-models", "limen-evidence": f"{FS}::fsap-stack-evidence",
                          "limen-inference-log": f"{FS}::fsap-stack-inference-log"},
          f"the base manifests go to namespace churn-team on the stack's access points: {handles}")
    check(any(c[:2] == ["docker", "push"] for c in calls) and ["kubectl", "--context", "prod_eks", "apply", "-k", bare.out] in calls
          and any("create" in c and "limen-first-model" in c for c in calls),
          "it pushes the image, applies the manifests and starts the first model")

    again, calls2 = bare.run(*EXISTING)
    deploys2 = [c for c in calls2 if c[3:5] == ["cloudformation", "deploy"]]
    check(again.returncode == 0 and deploys2 == deploys[:1] and bare.state_now().get("unchanged") == 1
          and not any(c[:2] in (["docker", "build"], ["docker", "push"]) for c in calls2)
          and not any("create" in c and "job" in c for c in calls2),
          f"a second run creates nothing: the same stack parameters (a no-op change set), no build, no job "
          f"{again.stderr[-500:] if again.returncode else ''}")

    # Everything there already: the stack holds nothing but its anchor, the manifests use the
    # account's own access points.
    points = [["/models", "fsap-team-models"], ["/evidence", "fsap-team-evidence"], ["/inference-log", "fsap-team-log"]]
    full = Sandbox(providers=[f"arn:aws:iam::210987654321:oidc-provider/{ISSUER[8:]}"], csidrivers=["efs.csi.aws.com"],
                   access_points=points, repositories=["limen"])
    done, calls3 = full.run(*EXISTING)
    deploys3 = [c for c in calls3 if c[3:5] == ["cloudformation", "deploy"]]
    params3 = dict(p.split("=", 1) for p in deploys3[0][deploys3[0].index("--parameter-overrides") + 1:]) if deploys3 else {}
    _, handles3 = rendered_handles(full) if done.returncode == 0 else ({}, {})
    check(done.returncode == 0 and "the stack creates nothing" in done.stdout
          and [params3.get(k) for k in ("CreateOidcProvider", "CreateEfsCsiDriver", "CreateRepository")] == ["false"] * 3
          and [params3.get(k) for k in ("ModelsAccessPointId", "EvidenceAccessPointId", "InferenceLogAccessPointId")]
          == [p[1] for p in points]
          and handles3.get("limen-inference-log") == f"{FS}::fsap-team-log",
          f"a cluster that has every piece: nothing created, its access points used ({params3})")

    # A dry run on a machine with none of the tools prints what the first real run ran.
    fresh = Sandbox()
    dry, none = fresh.run(*EXISTING, "--dry-run", tools=False)
    printed = [[t.replace(fresh.dir, bare.dir) for t in argv] for argv in printed_commands(dry.stdout)]
    check(dry.returncode == 0 and none == [] and not os.path.exists(fresh.out),
          f"--cluster --dry-run runs with no aws, kubectl, docker or git installed, and writes nothing {dry.stderr.strip()}")
    check(len(printed) == len(calls) and all(same_command(p, c) for p, c in zip(printed, calls)),
          f"--cluster --dry-run prints the {len(calls)} commands the real run ran, in order "
          f"({len(printed)} printed; first difference: "
          f"{next(((p, c) for p, c in zip(printed, calls) if not same_command(p, c)), None)})")
    proc, _ = fresh.run("--dry-run", tools=False)
    check(proc.returncode == 0, f"the new-cluster --dry-run runs with none of the tools too {proc.stderr.strip()}")

    for bad, code, said in ((("--cluster", "prod_eks"), 2, "--file-system"),
                            (EXISTING + ("--api-access-cidr", "203.0.113.7/32"), 2, "new-cluster"),
                            (("--cluster", "prod_eks", "--file-system", "nfs-1"), 2, "fs-"),
                            (EXISTING, 1, "no mount targets")):
        box = Sandbox(mount_targets=0) if code == 1 else fresh
        proc, ran = box.run(*bad)
        check(proc.returncode == code and said in proc.stderr
              and not any(c[3:5] == ["cloudformation", "deploy"] for c in ran),
              f"deploy.sh {' '.join(bad)}: exit {code}, says why, deploys nothing ({proc.stderr.strip()[-300:]})")
    shutil.rmtree(full.dir, ignore_errors=True)
    shutil.rmtree(fresh.dir, ignore_errors=True)
    return bare


def main():
    template = load_template()
    params = check_template(template)

    box = Sandbox()
    first, calls = box.run()
    calls = in_pipeline_order(calls)
    check(first.returncode == 0, f"deploy.sh with stubbed aws/kubectl/docker exits 0\n{first.stderr[-2000:]}")
    names = [" ".join(c[:3]) for c in calls]
    order = [
        "aws --region eu-west-1",  # cloudformation deploy
        "docker build --platform",
        "docker push",
        "kubectl --context limen",
    ]
    check(all(any(n.startswith(o) for n in names) for o in order), f"the run builds, pushes and applies: {names}")
    deploys = [c for c in calls if c[3:5] == ["cloudformation", "deploy"]]
    check(len(deploys) == 2 and "DeployAirflow=true" not in deploys[0] and "DeployAirflow=true" in deploys[1]
          and "RequirementsVersion=version-1" in deploys[1] and "--no-fail-on-empty-changeset" in deploys[0],
          "the stack is deployed, then MWAA started with the uploaded requirements' version")
    applied = [c for c in calls if c[0] == "kubectl" and "apply" in c]
    check(applied == [["kubectl", "--context", "limen", "apply", "-k", box.out]], f"kubectl apply -k {box.out}")
    synced = [c for c in calls if c[3:5] == ["s3", "sync"]]
    check(synced == [["aws", "--region", "eu-west-1", "s3", "sync", os.path.join(box.out, "dags"),
                      f"s3://{OUTPUTS['BucketName']}/dags"]], "the DAG folder is synced to the bucket's dags/")
    check(sorted(os.listdir(os.path.join(box.out, "dags"))) == ["kube_config.yaml", "limen_eks.py"],
          "dags/ holds the DAG and its kube config")
    check("curl localhost:8080/healthcheck" in first.stdout
          and """curl -X POST -d '{"petal_width": "2.1"}' localhost:8080/predict""" in first.stdout
          and AIRFLOW_OUTPUTS["AirflowUiUrl"] in first.stdout,
          "the run ends with the two curl lines and the Airflow UI URL")

    again, calls2 = box.run()
    tools2 = [c[:2] + c[3:5] for c in calls2]
    check(again.returncode == 0 and ["docker", "build"] not in [c[:2] for c in calls2]
          and ["docker", "push"] not in [c[:2] for c in calls2]
          and not any(c[3:5] == ["s3api", "put-object"] for c in calls2)
          and not any("create" in c and "job" in c for c in calls2),
          f"a second run rebuilds, re-uploads and re-creates nothing {tools2 if again.returncode else ''}")
    deploys2 = [c for c in calls2 if c[3:5] == ["cloudformation", "deploy"]]
    check(len(deploys2) == 2 and "RequirementsVersion=version-1" in deploys2[1],
          "a second run keeps the requirements version (MWAA does not restart)")

    fresh = Sandbox()
    dry, none = fresh.run("--dry-run")
    # The same commands, but in another sandbox: compare its paths as the first run's.
    printed = [[t.replace(fresh.dir, box.dir) for t in argv] for argv in printed_commands(dry.stdout)]
    check(dry.returncode == 0 and none == [], f"--dry-run runs no aws, kubectl or docker command ({len(none)} ran)")
    check(not os.path.exists(fresh.out), "--dry-run writes nothing")
    check(len(printed) == len(calls) and all(same_command(p, c) for p, c in zip(printed, calls)),
          f"--dry-run prints the {len(calls)} commands the real run ran, in order, and no others "
          f"({len(printed)} printed; first difference: "
          f"{next(((p, c) for p, c in zip(printed, calls) if not same_command(p, c)), None)})")
    down, none = fresh.run("--teardown", "--dry-run")
    printed = printed_commands(down.stdout)
    check(down.returncode == 0 and none == []
          and ["aws", "--region", "eu-west-1", "cloudformation", "delete-stack", "--stack-name", "limen"] in printed,
          "--teardown --dry-run prints the stack's deletion and runs nothing")
    # Nothing is open to everyone unless the deployer says so.
    check("Default" not in params["ApiAccessCidr"], "ApiAccessCidr has no default: the deployer states it")
    web = template["Resources"]
    mwaa = next(r for r in web.values() if r["Type"] == "AWS::MWAA::Environment")["Properties"]
    check(mwaa["WebserverAccessMode"] == {"Ref": "AirflowWebAccess"}
          and params["AirflowWebAccess"]["Default"] == "PRIVATE_ONLY",
          "the Airflow UI is private unless --airflow-public-ui")
    check(any("ApiAccessCidr=203.0.113.7/32" in c for c in deploys[0]),
          "the stack gets the CIDR given to deploy.sh")
    for bad in (["--region"], ["--bogus"], ["--no-cidr"]):
        proc, none = fresh.run(*bad)
        said = "--api-access-cidr" in proc.stderr if bad == ["--no-cidr"] else True
        check(proc.returncode == 2 and "deploy.sh:" in proc.stderr and none == [] and said,
              f"deploy.sh {' '.join(bad)}: exit 2 and says why ({proc.stderr.strip()})")

    existing = check_existing()
    if REAL_KUBECTL:
        rendered = kustomize(box.out)
        validate(rendered, box.dir)
        check_names(params, rendered, os.path.join(box.out, "dags"))
        mine = kustomize(existing.out)
        validate(mine, existing.dir)
        check({d["metadata"].get("namespace", "churn-team") for d in mine if d["kind"] != "PersistentVolume"} == {"churn-team"}
              and not any(d["kind"] in ("Role", "RoleBinding") for d in mine),
              "the existing-cluster render: everything in namespace churn-team, no MWAA RBAC")
        volumes = {d["metadata"]["name"]: d for d in mine if d["kind"] == "PersistentVolume"}
        bound = {d["metadata"]["name"]: d["spec"]["volumeName"] for d in mine if d["kind"] == "PersistentVolumeClaim"}
        check(set(volumes) == {f"{claim}-churn-team" for claim in CLAIMS}
              and all(bound.get(claim) == f"{claim}-churn-team" for claim in CLAIMS)
              and volumes.get("limen-models-churn-team", {}).get("spec", {}).get("csi", {}).get("volumeHandle")
              == f"{FS}::fsap-stack-models",
              f"outside namespace ml the cluster-wide volumes carry the namespace, and each claim binds its own: {bound}")
    elif os.environ.get("LIMEN_REQUIRE_KUBECTL"):
        check(False, "kubectl is required to render the overlays (LIMEN_REQUIRE_KUBECTL)")
    else:
        print("skip  rendering the overlay and the name checks on it (no kubectl on this machine)")
    shutil.rmtree(existing.dir, ignore_errors=True)

    shutil.rmtree(box.dir, ignore_errors=True)
    shutil.rmtree(fresh.dir, ignore_errors=True)
    if failures:
        print(f"\n{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("\nall deploy/aws checks passed")


if __name__ == "__main__":
    main()

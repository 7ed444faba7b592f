#!/usr/bin/env bash
# From an AWS account to a running limen, two ways:
#
# - a new cluster (the default): deploys the CloudFormation stack deploy/aws/limen.yaml (VPC, EKS,
#   EFS, ECR, MWAA's bucket), builds and pushes the image to its ECR repository, applies the
#   Kubernetes manifests with the stack's ids, uploads the Airflow DAG and requirements to the MWAA
#   bucket, starts the Airflow environment, and prints how to reach the server;
# - an existing cluster (--cluster NAME --file-system fs-...): checks what the account and the
#   cluster already have (the IAM OIDC provider, the EFS CSI driver, access points on the file
#   system, the ECR repository), creates only what is missing with a stack of its own
#   (deploy/aws/existing.yaml), then builds, pushes and applies as above. No VPC, no Airflow.
#
# Safe to re-run: every step converges (an unchanged stack is a no-op, an image already pushed is
# not rebuilt, an unchanged requirements.txt keeps its S3 version so MWAA does not restart, what
# the existing-cluster stack created stays its own).
#
#   deploy/aws/deploy.sh [--dry-run] [--region REGION] [--stack NAME] [stack options]
#   deploy/aws/deploy.sh --cluster NAME --file-system fs-... [--namespace NS] [--repository NAME]
#   deploy/aws/deploy.sh --teardown [--dry-run] [--region REGION] [--stack NAME]
#
# Needs: aws (CLI v2, credentials that may create the stack), docker, kubectl, git; --dry-run
# needs none of them.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/aws/deploy.sh [options]

  --region REGION            AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)
  --stack NAME               CloudFormation stack name (default: limen)
  --cluster-name NAME        EKS cluster name (stack parameter ClusterName, default limen)
  --environment-name NAME    MWAA environment name (EnvironmentName, default limen-airflow)
  --node-instance-type TYPE  node instance type (NodeInstanceType, default t3.medium)
  --api-access-cidr CIDR     required: who may reach the Kubernetes API from the internet
                             (ApiAccessCidr), e.g. your address: 203.0.113.7/32
  --airflow-public-ui        open the Airflow UI to browsers anywhere (AirflowWebAccess
                             PUBLIC_ONLY; default private to the VPC)
  --no-airflow               stop before the MWAA environment (the costliest part)

 Into an existing EKS cluster and EFS file system instead of a new stack:
  --cluster NAME             the cluster (its kube context is added as NAME)
  --file-system fs-ID        the EFS file system, with mount targets in the cluster's VPC
  --namespace NS             the namespace limen runs in (default: ml); created if missing
  --repository NAME          the ECR repository of the image (default: limen); created if missing
                             (the stack, default limen-NAME, holds only what was missing)

  --out DIR                  where rendered files go (default: deploy/aws/.rendered)
  --dry-run                  print every aws, docker and kubectl command without running any,
                             and write nothing
  --teardown                 delete the stack and everything in it (models included)
  -h, --help                 this help
EOF
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
stack=limen
stack_given=0
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
out="$here/.rendered"
dry=0
teardown=0
airflow=1
cidr=0
params=()
cluster_existing=""
file_system_existing=""
namespace_existing=ml
repository_existing=limen
new_cluster_flags=()

value() { # the value of option $1, which must be $2
  if [ $# -lt 2 ] || [ -z "$2" ]; then
    echo "deploy.sh: $1 needs a value (see --help)" >&2
    exit 2
  fi
  printf '%s' "$2"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --teardown) teardown=1 ;;
    --no-airflow) airflow=0 ;;
    --region) region="$(value "$@")"; shift ;;
    --stack) stack="$(value "$@")"; stack_given=1; shift ;;
    --out) out="$(value "$@")"; shift ;;
    --cluster-name) params+=("ClusterName=$(value "$@")"); new_cluster_flags+=("$1"); shift ;;
    --environment-name) params+=("EnvironmentName=$(value "$@")"); new_cluster_flags+=("$1"); shift ;;
    --node-instance-type) params+=("NodeInstanceType=$(value "$@")"); new_cluster_flags+=("$1"); shift ;;
    --api-access-cidr) params+=("ApiAccessCidr=$(value "$@")"); cidr=1; new_cluster_flags+=("$1"); shift ;;
    --airflow-public-ui) params+=("AirflowWebAccess=PUBLIC_ONLY"); new_cluster_flags+=("$1") ;;
    --cluster) cluster_existing="$(value "$@")"; shift ;;
    --file-system) file_system_existing="$(value "$@")"; shift ;;
    --namespace) namespace_existing="$(value "$@")"; shift ;;
    --repository) repository_existing="$(value "$@")"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
if [ -z "$region" ]; then
  echo "deploy.sh: no AWS region: pass --region or set AWS_REGION" >&2
  exit 2
fi
existing=0
if [ -n "$cluster_existing$file_system_existing" ]; then
  existing=1
  if [ -z "$cluster_existing" ] || [ -z "$file_system_existing" ]; then
    echo "deploy.sh: an existing cluster needs both --cluster NAME and --file-system fs-ID" >&2
    exit 2
  fi
  if [ ${#new_cluster_flags[@]} -gt 0 ] || [ "$teardown" = 1 ]; then
    echo "deploy.sh: ${new_cluster_flags[*]:---teardown} is for the new-cluster stack; with --cluster, your cluster's own settings stay as they are" >&2
    exit 2
  fi
  case "$file_system_existing" in
    fs-*) ;;
    *) echo "deploy.sh: --file-system takes an EFS file system id (fs-...), got '$file_system_existing'" >&2; exit 2 ;;
  esac
  # A stack of its own per cluster; stack names take no underscores.
  stack_default="limen-${cluster_existing//_/-}"
  [ "$stack_given" = 1 ] || stack="$stack_default"
elif [ "$teardown" = 0 ] && [ "$cidr" = 0 ]; then
  echo "deploy.sh: pass --api-access-cidr CIDR, the addresses that may reach the Kubernetes API (your own, e.g. \$(curl -s https://checkip.amazonaws.com)/32); nothing is opened to everyone by default. Or deploy into a cluster you have: --cluster NAME --file-system fs-ID" >&2
  exit 2
fi
# A dry run only prints: it needs none of the tools.
if [ "$dry" = 0 ]; then
  for tool in aws docker kubectl git; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "deploy.sh: '$tool' is not installed; install it and re-run (see the README, Deploy to AWS), or see every command first with --dry-run" >&2
      exit 2
    fi
  done
fi
cd "$root"

# Every aws/docker/kubectl command goes through show: printed as a shell line (+ cmd), then run
# unless --dry-run.
show() { printf '+'; printf ' %q' "$@"; printf '\n'; }
run() {
  show "$@"
  if [ "$dry" = 0 ]; then "$@"; fi
}
# capture VAR PLACEHOLDER cmd...: VAR = the command's output (PLACEHOLDER in a dry run).
capture() { output_of strict "$@"; }
# probe cmd...: whether the command succeeds (it never does in a dry run).
probe() {
  show "$@"
  [ "$dry" = 0 ] && "$@" >/dev/null 2>&1
}
# lookup VAR PLACEHOLDER cmd...: as capture, but a command that fails (the thing looked up is
# not there) leaves VAR empty.
lookup() { output_of tolerant "$@"; }
output_of() { # strict|tolerant VAR PLACEHOLDER cmd...
  local mode=$1 var=$2 placeholder=$3
  shift 3
  show "$@"
  if [ "$dry" = 1 ]; then
    printf -v "$var" '%s' "$placeholder"
  elif [ "$mode" = tolerant ]; then
    printf -v "$var" '%s' "$("$@" 2>/dev/null || true)"
  else
    printf -v "$var" '%s' "$("$@")"
  fi
}
# relpath TARGET BASE: the path of directory TARGET relative to directory BASE (kustomize wants
# relative paths; macOS has no realpath --relative-to).
relpath() {
  local target base up="" rest
  target="$(cd "$1" && pwd -P)"
  base="$(cd "$2" 2>/dev/null && pwd -P || printf '%s' "$2")"
  while [ "$base" != / ] && [ "${target#"$base"/}" = "$target" ]; do
    base="$(dirname "$base")"
    up="../$up"
  done
  if [ "$base" = / ]; then rest="${target#/}"; else rest="${target#"$base"/}"; fi
  printf '%s%s' "$up" "$rest"
}
# write FILE: stdin to FILE (nothing in a dry run).
write() {
  if [ "$dry" = 1 ]; then
    echo "# would write $1"
    cat >/dev/null
  else
    mkdir -p "$(dirname "$1")"
    cat >"$1"
  fi
}

sha256() { # of file $1 (sha256sum on Linux, shasum on macOS)
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}
aws_=(aws --region "$region")
stack_outputs=""
requirements_version=""
read_outputs() {
  capture stack_outputs "" "${aws_[@]}" cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output text
}
output() { # the stack output named $1 (@Name@ in a dry run)
  if [ "$dry" = 1 ]; then
    printf '@%s@' "$1"
    return
  fi
  local v
  v="$(awk -F'\t' -v k="$1" '$1 == k { print $2 }' <<<"$stack_outputs")"
  if [ -z "$v" ]; then
    echo "deploy.sh: stack $stack has no output $1; is it a stack of deploy/aws/limen.yaml? (aws cloudformation describe-stacks --stack-name $stack)" >&2
    exit 1
  fi
  printf '%s' "$v"
}
deploy_stack() { # extra parameter overrides as arguments
  local overrides=("${params[@]}" "$@")
  local cmd=("${aws_[@]}" cloudformation deploy --stack-name "$stack"
    --template-file deploy/aws/limen.yaml --capabilities CAPABILITY_IAM
    --no-fail-on-empty-changeset)
  if [ ${#overrides[@]} -gt 0 ]; then cmd+=(--parameter-overrides "${overrides[@]}"); fi
  run "${cmd[@]}"
}

if [ "$teardown" = 1 ]; then
  echo "== Teardown of stack $stack in $region: the cluster, the EFS store (every model) and the image repository go"
  read_outputs
  bucket="$(output BucketName)"
  # CloudFormation deletes only an empty bucket; it is versioned, so every version goes.
  versions=""
  capture versions "" "${aws_[@]}" s3api list-object-versions --bucket "$bucket" \
    --query '[Versions,DeleteMarkers][][].[Key,VersionId]' --output text
  while IFS=$'\t' read -r key version; do
    if [ -z "$key" ] || [ "$key" = None ]; then continue; fi
    run "${aws_[@]}" s3api delete-object --bucket "$bucket" --key "$key" --version-id "$version" >/dev/null
  done <<<"$versions"
  if [ "$dry" = 1 ]; then echo "# then, for each version listed: aws s3api delete-object --bucket $bucket --key KEY --version-id VERSION"; fi
  run "${aws_[@]}" cloudformation delete-stack --stack-name "$stack"
  run "${aws_[@]}" cloudformation wait stack-delete-complete --stack-name "$stack"
  [ "$dry" = 1 ] || echo "Deleted. MWAA's CloudWatch log groups (airflow-<environment>-*) stay; delete them in CloudWatch if you want."
  exit 0
fi

# push_image: the image of this checkout in $repository (built and pushed unless ECR has its tag);
# sets image.
push_image() {
  local version tag
  version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
  if command -v git >/dev/null 2>&1; then
    tag="$version-$(git rev-parse --short=12 HEAD)"
    if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
      # Tags are immutable: a build of uncommitted changes gets a tag of its own.
      git diff HEAD >"${TMPDIR:-/tmp}/limen-deploy-diff.$$"
      tag="$tag-dirty-$(sha256 "${TMPDIR:-/tmp}/limen-deploy-diff.$$" | cut -c1-8)"
      rm -f "${TMPDIR:-/tmp}/limen-deploy-diff.$$"
    fi
  else
    tag="$version-@commit@" # a dry run without git
  fi
  image="$repository:$tag"
  if probe "${aws_[@]}" ecr describe-images --repository-name "${repository#*/}" --image-ids "imageTag=$tag"; then
    echo "$image is already in ECR"
  else
    # The nodes are x86_64 (the stack's AMI type), whatever builds the image.
    run docker build --platform linux/amd64 --tag "$image" .
    printf '%s |%s\n' "$(show "${aws_[@]}" ecr get-login-password)" \
      "$(show docker login --username AWS --password-stdin "${repository%%/*}" | cut -c2-)"
    if [ "$dry" = 0 ]; then
      "${aws_[@]}" ecr get-login-password | docker login --username AWS --password-stdin "${repository%%/*}"
    fi
    run docker push "$image"
  fi
}

# apply_manifests BASE: the kustomization in folder BASE rendered into $out with the stack's
# image, volume handles and namespace, applied to $context; then the first model's job, once.
apply_manifests() {
  local base models_handle evidence_handle log_handle suffix="" pv_patches=""
  models_handle="$file_system::$(output ModelsAccessPointId)"
  evidence_handle="$file_system::$(output EvidenceAccessPointId)"
  log_handle="$file_system::$(output InferenceLogAccessPointId)"
  # PersistentVolumes are cluster-wide: outside namespace ml they carry the namespace in their
  # names, so two namespaces of one cluster can each run a limen.
  [ "$namespace" = ml ] || suffix="-$namespace"
  for volume in "limen-models:$models_handle" "limen-evidence:$evidence_handle" "limen-inference-log:$log_handle"; do
    local name="${volume%%:*}" handle="${volume#*:}"
    pv_patches+="  - target: { kind: PersistentVolume, name: $name }
    patch: '[{\"op\": \"replace\", \"path\": \"/spec/csi/volumeHandle\", \"value\": \"$handle\"}"
    if [ -n "$suffix" ]; then
      pv_patches+=", {\"op\": \"replace\", \"path\": \"/metadata/name\", \"value\": \"$name$suffix\"}]'
  - target: { kind: PersistentVolumeClaim, name: $name }
    patch: '[{\"op\": \"replace\", \"path\": \"/spec/volumeName\", \"value\": \"$name$suffix\"}]'
"
    else
      pv_patches+="]'
"
    fi
  done
  [ "$dry" = 1 ] || mkdir -p "$out"
  base="$(relpath "$1" "$out")"
  write "$out/kustomization.yaml" <<EOF
# Rendered by deploy/aws/deploy.sh from the outputs of stack $stack; re-run it rather than edit.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $namespace
resources:
  - $base
images:
  - name: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/limen
    newName: $repository
    newTag: ${image##*:}
patches:
$pv_patches  - target: { kind: Namespace, name: ml }
    patch: '[{"op": "replace", "path": "/metadata/name", "value": "$namespace"}]'
EOF
  run kubectl --context "$context" apply -k "$out"
  # The first model: one run of the nightly train-and-validate job (with no production version
  # yet, its gate waits for no shadow evidence), unless it already ran. The servers are ready
  # once it is promoted.
  if ! probe kubectl --context "$context" -n "$namespace" get job limen-first-model; then
    run kubectl --context "$context" -n "$namespace" create job limen-first-model --from=cronjob/limen-train-validate
  fi
}

# wait_and_tell LINES: the first model, then the servers; then how to reach them, and LINES.
wait_and_tell() {
  run kubectl --context "$context" -n "$namespace" wait --for=condition=complete job/limen-first-model --timeout=30m
  run kubectl --context "$context" -n "$namespace" rollout status deployment/limen --timeout=10m
  cat <<EOF
limen serves in namespace $namespace of cluster $cluster (image $image).
Reach the server from this machine (leave this running):
  kubectl --context $context -n $namespace port-forward service/limen 8080:80
then:
  curl localhost:8080/healthcheck
  curl -X POST -d '{"petal_width": "2.1"}' localhost:8080/predict
$1
EOF
}

if [ "$existing" = 1 ]; then
  cluster="$cluster_existing"
  context="$cluster"
  echo "== 1/5 What cluster $cluster and file system $file_system_existing already have"
  # What this stack created on an earlier run stays its own (a second run creates nothing and
  # deletes nothing); everything else is looked for in the account and the cluster.
  previous=""
  lookup previous "" "${aws_[@]}" cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].Parameters[].[ParameterKey,ParameterValue]' --output text
  ours() { # whether the earlier run's stack has parameter $1 = $2 (it created that piece)
    awk -F'\t' -v k="$1" -v v="$2" '$1 == k && $2 == v { found = 1 } END { exit !found }' <<<"$previous"
  }
  issuer=""
  capture issuer "@OidcIssuer@" "${aws_[@]}" eks describe-cluster --name "$cluster" \
    --query cluster.identity.oidc.issuer --output text
  if [ "$dry" = 0 ] && [ "${issuer#https://}" = "$issuer" ]; then
    echo "deploy.sh: cluster $cluster has no OIDC issuer ('$issuer'); is it an EKS cluster in $region? (aws eks describe-cluster --name $cluster)" >&2
    exit 1
  fi
  run "${aws_[@]}" eks update-kubeconfig --name "$cluster" --alias "$context"
  mounts=""
  capture mounts "@MountTargets@" "${aws_[@]}" efs describe-mount-targets --file-system-id "$file_system_existing" \
    --query 'length(MountTargets)' --output text
  if [ "$dry" = 0 ] && { [ -z "$mounts" ] || [ "$mounts" = 0 ]; }; then
    echo "deploy.sh: file system $file_system_existing has no mount targets (or cannot be read); create one in each of the cluster's subnets, with NFS (2049) open from the nodes' security group, then re-run" >&2
    exit 1
  fi
  missing=()
  create_oidc=false
  providers=""
  lookup providers "" "${aws_[@]}" iam list-open-id-connect-providers \
    --query 'OpenIDConnectProviderList[].Arn' --output text
  has_provider() { # the account has an IAM OIDC provider for the cluster's issuer
    tr '\t' '\n' <<<"$providers" | awk -v want="oidc-provider/${issuer#https://}" \
      'substr($0, length($0) - length(want) + 1) == want { found = 1 } END { exit !found }'
  }
  if ours CreateOidcProvider true || ! has_provider; then
    create_oidc=true
    missing+=("IAM OIDC provider")
  fi
  create_driver=false
  if ours CreateEfsCsiDriver true || ! probe kubectl --context "$context" get csidriver efs.csi.aws.com; then
    create_driver=true
    missing+=("EFS CSI driver")
  fi
  points=""
  lookup points "" "${aws_[@]}" efs describe-access-points --file-system-id "$file_system_existing" \
    --query 'AccessPoints[].[RootDirectory.Path,AccessPointId]' --output text
  point_params=()
  for pair in Models:/models Evidence:/evidence InferenceLog:/inference-log; do
    key="${pair%%:*}AccessPointId" path="${pair#*:}"
    id="$(awk -F'\t' -v p="$path" '$1 == p { print $2; exit }' <<<"$points")"
    # Created by this stack before (its parameter empty): keep it the stack's.
    if [ -n "$previous" ] && ! awk -F'\t' -v k="$key" '$1 == k && $2 != "" { found = 1 } END { exit !found }' <<<"$previous"; then
      id=""
    fi
    [ -n "$id" ] || missing+=("access point $path")
    point_params+=("$key=$id")
  done
  create_repository=false
  if ours CreateRepository true || ! probe "${aws_[@]}" ecr describe-repositories --repository-names "$repository_existing"; then
    create_repository=true
    missing+=("ECR repository $repository_existing")
  fi
  if [ ${#missing[@]} -eq 0 ]; then
    echo "everything limen needs is there: the stack creates nothing"
  else
    echo "missing, so stack $stack holds: $(printf '%s, ' "${missing[@]}" | sed 's/, $//')"
  fi

  echo "== 2/5 Stack $stack in $region (only what was missing)"
  run "${aws_[@]}" cloudformation deploy --stack-name "$stack" \
    --template-file deploy/aws/existing.yaml --capabilities CAPABILITY_IAM \
    --no-fail-on-empty-changeset --parameter-overrides "ClusterName=$cluster" \
    "OidcIssuer=$issuer" "FileSystemId=$file_system_existing" \
    "RepositoryName=$repository_existing" "PipelineNamespace=$namespace_existing" \
    "CreateOidcProvider=$create_oidc" "CreateEfsCsiDriver=$create_driver" \
    "${point_params[@]}" "CreateRepository=$create_repository"
  read_outputs
  namespace="$namespace_existing"
  repository="$(output RepositoryUri)"
  file_system="$file_system_existing"

  echo "== 3/5 Image"
  push_image

  echo "== 4/5 Kubernetes manifests (deploy/k8s with the stack's ids) into $cluster, namespace $namespace"
  apply_manifests "$root/deploy/k8s"

  echo "== 5/5 The first model, then the servers"
  wait_and_tell "Schedule the pipeline with your own Airflow: deploy/airflow/limen_eks.py (README, Deploy into your cluster).
Remove what the stack created (never the cluster, the file system or the models): aws --region $region cloudformation delete-stack --stack-name $stack"
  exit 0
fi

echo "== 1/6 Stack $stack in $region (network, EKS, EFS, ECR, S3)"
deploy_stack
read_outputs
cluster="$(output ClusterName)"
namespace="$(output PipelineNamespace)"
repository="$(output RepositoryUri)"
bucket="$(output BucketName)"
file_system="$(output FileSystemId)"

echo "== 2/6 Image"
push_image

echo "== 3/6 Kubernetes manifests (deploy/aws/overlay with the stack's ids) into $cluster"
context="$cluster"
run "${aws_[@]}" eks update-kubeconfig --name "$cluster" --alias "$context"
apply_manifests "$here/overlay"

if [ "$airflow" = 1 ]; then
  echo "== 4/6 Airflow DAG, its kube config and requirements.txt to s3://$bucket"
  # The DAG with this stack's image and namespace; the kube config MWAA's workers reach the
  # cluster with (a token for the execution role, which the stack maps to limen-pipeline).
  endpoint="$(output ClusterEndpoint)"
  authority="$(output ClusterCertificateAuthority)"
  sed -e "s|^DEFAULT_IMAGE = .*|DEFAULT_IMAGE = \"$image\"|" \
    -e "s|^DEFAULT_NAMESPACE = .*|DEFAULT_NAMESPACE = \"$namespace\"|" \
    deploy/airflow/limen_eks.py | write "$out/dags/limen_eks.py"
  write "$out/dags/kube_config.yaml" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: $cluster
    cluster:
      server: $endpoint
      certificate-authority-data: $authority
contexts:
  - name: aws
    context:
      cluster: $cluster
      user: mwaa
current-context: aws
users:
  - name: mwaa
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1beta1
        command: aws
        args: [--region, $region, eks, get-token, --cluster-name, $cluster, --output, json]
EOF
  run "${aws_[@]}" s3 sync "$out/dags" "s3://$bucket/dags"
  requirements=deploy/aws/mwaa-requirements.txt
  sha="$(sha256 "$requirements")"
  # The file's checksum is kept in its metadata: the same file keeps its version.
  head=("${aws_[@]}" s3api head-object --bucket "$bucket" --key requirements.txt
    --query '[Metadata.sha256,VersionId]' --output text)
  show "${head[@]}"
  current=""
  if [ "$dry" = 0 ]; then current="$("${head[@]}" 2>/dev/null || true)"; fi
  if [ "${current%%$'\t'*}" = "$sha" ]; then
    requirements_version="${current#*$'\t'}"
    echo "requirements.txt is unchanged (version $requirements_version)"
  else
    capture requirements_version "@RequirementsVersion@" "${aws_[@]}" s3api put-object \
      --bucket "$bucket" --key requirements.txt --body "$requirements" \
      --metadata "sha256=$sha" --query VersionId --output text
  fi

  echo "== 5/6 Airflow environment (MWAA): 20 to 30 minutes the first time, then only on changes"
  deploy_stack DeployAirflow=true "RequirementsVersion=$requirements_version"
  read_outputs
  airflow_url="$(output AirflowUiUrl)"
else
  airflow_url="(not deployed: --no-airflow)"
fi

echo "== 6/6 The first model, then the servers"
wait_and_tell "Airflow UI (DAG limen_eks, nightly train, validate, watch): $airflow_url
Tear it all down: deploy/aws/deploy.sh --teardown --region $region --stack $stack"

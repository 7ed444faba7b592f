#!/usr/bin/env bash
# Training from S3 and Parquet against a CSV on disk (issue 27):
#
#   benches/s3.sh [ROWS] [ROUNDS]      (default 1,000,000 rows, 3 rounds)
#
# Writes one table with pyarrow (tests/s3/tables.py: four numeric features, a text label, a
# timestamp) as CSV and as Parquet (snappy), starts moto's S3 server on loopback, uploads the
# Parquet file, then runs `limen train` (release build, --cv-folds 0, the default hold-out) on
#   csv:          the CSV on disk
#   parquet:      the Parquet file on disk
#   s3-parquet:   s3://bench/churn.parquet, through limen's S3 client
# in interleaved rounds, and prints each run's wall time and peak RSS (GNU time), then the
# median per source. Needs the venv of tests/s3/requirements.txt in target/s3-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
rounds=${2:-3}
venv=target/s3-venv
[ -x "$venv/bin/moto_server" ] || { echo "no $venv: python3 -m venv $venv && $venv/bin/pip install -r tests/s3/requirements.txt" >&2; exit 2; }
cargo build --release --quiet
work=$(mktemp -d)
moto_pid=""
cleanup() { [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$venv/bin/python" tests/s3/tables.py "$work/tables" "$rows"
"$venv/bin/moto_server" -H 127.0.0.1 -p 0 2> "$work/moto.log" > /dev/null &
moto_pid=$!
for _ in $(seq 100); do
  endpoint=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/moto.log" | head -1 || true)
  [ -n "$endpoint" ] && break
  sleep 0.1
done
[ -n "$endpoint" ] || { echo "moto_server did not start" >&2; exit 1; }
"$venv/bin/python" - "$endpoint" "$work/tables/churn.parquet" <<'EOF'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket="bench")
s3.upload_file(sys.argv[2], "bench", "churn.parquet")
EOF
echo "table: $rows rows; CSV $(stat -c %s "$work/tables/churn.csv") bytes, Parquet $(stat -c %s "$work/tables/churn.parquet") bytes"

run() {
  local name=$1 data=$2 store
  store=$(mktemp -d -p "$work")
  AWS_ENDPOINT_URL=$endpoint AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    /usr/bin/time -f "%e %M" -o "$work/time" target/release/limen --store "$store" train \
      --model churn --data "$data" --label-column churned \
      --features tenure,monthly_charges,support_calls,discount --standardize --cv-folds 0 \
      > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  read -r wall rss < "$work/time"
  echo "$name $wall $rss" | tee -a "$work/results"
  rm -rf "$store"
}
for round in $(seq "$rounds"); do
  echo "round $round (source, wall s, peak RSS KiB)"
  run csv "$work/tables/churn.csv"
  run parquet "$work/tables/churn.parquet"
  run s3-parquet s3://bench/churn.parquet
done
echo "median over $rounds rounds:"
for name in csv parquet s3-parquet; do
  grep "^$name " "$work/results" | sort -k2 -n | awk -v n="$rounds" -v name="$name" \
    'NR == int((n + 1) / 2) { printf "  %-11s %7.2f s  %8d KiB\n", name, $2, $3 }'
done

#!/usr/bin/env python3
"""Uploads files to an S3-compatible server with boto3 (signed, as any S3 client):

    python tests/s3/put.py ENDPOINT BUCKET [KEY=FILE ...]

Creates BUCKET if it does not exist. Credentials: AWS's test keys `testing`/`testing`.
"""
import sys

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=bucket)
for pair in sys.argv[3:]:
    key, path = pair.split("=", 1)
    s3.upload_file(path, bucket, key)

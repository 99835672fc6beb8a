# Starts a moto S3 server on a free 127.0.0.1 port for the tests, with a
# bucket, and exports JFS_TEST_S3, ACCESS_KEY and SECRET_KEY. Source it; it
# stops the server (by its PID) when the sourcing shell exits.
#
# moto is the reference S3-compatible server here: it handles ranged GET,
# LIST with and without a delimiter and DELETE as S3 does (see FINDINGS);
# it refuses some CreateBucket requests, so the bucket is made with boto3.

s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
moto_server -H 127.0.0.1 -p "$s3_port" > target/moto.log 2>&1 &
s3_pid=$!
ci_pids+=("$s3_pid")
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $s3_port), 0.2)" 2>/dev/null && break
  sleep 0.2
done
export ACCESS_KEY=testing SECRET_KEY=testing
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing python3 - "$s3_port" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
s3.create_bucket(Bucket="jfs-test")
PY
export JFS_TEST_S3="http://127.0.0.1:$s3_port/jfs-test"
log "S3 server (moto) at $JFS_TEST_S3, pid $s3_pid"

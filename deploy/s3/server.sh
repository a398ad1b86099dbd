#!/usr/bin/env bash
# A real S3-compatible server on this machine, loopback only (deploy/README.md, "Object stores"):
#
#   deploy/s3/server.sh build   (first use of up)  go install the server into $CACHE/bin (git-ignored)
#   deploy/s3/server.sh up      (make s3-up)       build, start on 127.0.0.1:$PORT, make the bucket,
#                                                  end by printing the `export AWS_...=...` lines to set
#   deploy/s3/server.sh down    (make s3-down)     stop the server it started (idempotent)
#   deploy/s3/server.sh env                        print the `export` lines again
#
# The server is VersityGW (Apache-2.0, a Go module; MinIO's server is AGPL), posix backend: each
# bucket is a folder under $DATA, each object a file. It implements S3's conditional writes
# (PUT with If-None-Match: * -> 412 when the key exists; If-Match: <etag>), which the run store's
# leases rely on. Built once from the Go module proxy with the machine's Go (about 3 minutes
# with a cold module cache, on 2 cores).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=v1.8.0
MODULE=github.com/versity/versitygw/cmd/versitygw
CACHE=${MNIST_BATCH_S3_CACHE:-$REPO/.cache/s3}
BIN=$CACHE/bin/versitygw
STAMP=$CACHE/bin/versitygw.version
DATA=${MNIST_BATCH_S3_DATA:-$CACHE/data}
PIDFILE=$CACHE/server.pid
LOG=$CACHE/server.log
PORT=${MNIST_BATCH_S3_PORT:-9766}
BUCKET=${MNIST_BATCH_S3_BUCKET:-mnist-batch}
ACCESS=${MNIST_BATCH_S3_ACCESS_KEY:-mnistbatch}
SECRET=${MNIST_BATCH_S3_SECRET_KEY:-mnistbatch-local-secret}
REGION=${MNIST_BATCH_S3_REGION:-us-east-1}

fail() { echo "s3-${CMD:-server}: $*" >&2; exit 1; }
port_open() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }
alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2> /dev/null; }

build() {
  if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2> /dev/null)" = "$VERSION" ]; then
    return 0
  fi
  command -v go > /dev/null || fail "no Go toolchain on the PATH (needed once, to build $MODULE@$VERSION)"
  mkdir -p "$CACHE/bin"
  echo "building $MODULE@$VERSION into $CACHE/bin (once; about 3 minutes with a cold Go module cache) ..." >&2
  if ! GOBIN=$CACHE/bin GOFLAGS=-buildvcs=false go install "$MODULE@$VERSION" > "$CACHE/build.log" 2>&1; then
    tail -5 "$CACHE/build.log" >&2
    fail "go install $MODULE@$VERSION failed (log: $CACHE/build.log)"
  fi
  echo "$VERSION" > "$STAMP"
}

print_env() {
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT"
  echo "export AWS_ACCESS_KEY_ID=$ACCESS"
  echo "export AWS_SECRET_ACCESS_KEY=$SECRET"
  echo "export AWS_DEFAULT_REGION=$REGION"
  echo "export AWS_REGION=$REGION"
}

up() {
  build
  mkdir -p "$DATA/$BUCKET"  # posix backend: a folder under the root is a bucket
  if alive; then
    echo "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT, data $DATA" >&2
  else
    port_open "$PORT" && fail "127.0.0.1:$PORT is taken by another process (set MNIST_BATCH_S3_PORT)"
    ROOT_ACCESS_KEY=$ACCESS ROOT_SECRET_KEY=$SECRET VGW_REGION=$REGION \
      nohup "$BIN" --port "127.0.0.1:$PORT" --quiet posix "$DATA" > "$LOG" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    for _ in $(seq 100); do
      port_open "$PORT" && break
      alive || fail "the server exited at start (log: $LOG): $(tail -3 "$LOG")"
      sleep 0.1
    done
    port_open "$PORT" || fail "the server did not listen on 127.0.0.1:$PORT within 10 s (log: $LOG)"
    echo "VersityGW $VERSION on http://127.0.0.1:$PORT (pid $(cat "$PIDFILE")), bucket s3://$BUCKET, data $DATA" >&2
  fi
  echo "# set these, then use s3://$BUCKET/... (deploy/README.md, \"Object stores\"):" >&2
  print_env
}

down() {
  if alive; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 50); do alive || break; sleep 0.1; done
    echo "stopped the S3 server (pid $(cat "$PIDFILE"))" >&2
  else
    echo "no S3 server of ours is running" >&2
  fi
  rm -f "$PIDFILE"
}

CMD=${1:-}
case $CMD in
  build) build && echo "$BIN" ;;
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) echo "usage: $0 build|up|down|env" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real Flink cluster on this machine, loopback only (deploy/README.md, "Flink"):
#
#   deploy/flink/cluster.sh up       (make cluster-up)    resolve, check, start, print `runner options: ...`
#   deploy/flink/cluster.sh down     (make cluster-down)  stop everything it started (idempotent)
#   deploy/flink/cluster.sh status   which of its processes are alive
#
# What runs (pid and log files under $CACHE/run, $CACHE/logs):
#   - Flink 1.19 JobManager (StandaloneSessionClusterEntrypoint; REST + web UI on 127.0.0.1:8081)
#   - Beam's Flink job server (FlinkJobServerDriver, Beam = the Python SDK's version) pointed at it
#   - $TASKMANAGERS emulated worker hosts (deploy/flink/host.sh: own mount, PID and UTS namespaces,
#     the checkout, /tmp and home hidden), each a Flink TaskManager ($SLOTS slots) and a Beam SDK
#     worker pool on the host's own loopback address 127.0.0.(N+1), reached as `workerpool` from that
#     host (--environment_type EXTERNAL --environment_config workerpool:$POOL_PORT). Their Python
#     environment is installed from the project's wheel by deploy/worker/install.sh (what a worker
#     image build runs), into $CACHE/worker-venv, rebuilt when the package's sources change.
#   The hosts get the AWS_* variables of this script's environment (the bucket settings a pod's env
#   would hold); `make s3-up` prints them.
# The jars come from Maven Central through mvn on first use (deploy/flink/{cluster,jobserver}/pom.xml)
# into $CACHE (git-ignored). A piece that cannot be had fails `up` with one line naming it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/deploy/flink
CACHE=${MNIST_BATCH_FLINK_CACHE:-$REPO/.cache/flink}
RUN=$CACHE/run
LOGS=$CACHE/logs
PY=${PY:-$REPO/.venv/bin/python}
REST_PORT=${FLINK_REST_PORT:-8081}
RPC_PORT=${FLINK_RPC_PORT:-6123}
BLOB_PORT=${FLINK_BLOB_PORT:-6124}
JOB_PORT=${BEAM_JOB_PORT:-8099}
ARTIFACT_PORT=${BEAM_ARTIFACT_PORT:-8098}
EXPANSION_PORT=${BEAM_EXPANSION_PORT:-8097}
POOL_PORT=${BEAM_WORKER_POOL_PORT:-50000}
TASKMANAGERS=${TASKMANAGERS:-2}
HOST_ROOT=${MNIST_BATCH_HOST_ROOT:-/run/mnist-batch-host}
WORKER_VENV=$CACHE/worker-venv
HOST_VENV=${MNIST_BATCH_WORKER_VENV:-$WORKER_VENV}  # restart-host only: another environment (the version-skew test)
SLOTS=${SLOTS:-2}
PARALLELISM=${PARALLELISM:-2}
# Flink's own distribution passes these to every JVM on Java 17 (its config.yaml, env.java.opts.all).
JAVA_OPENS=(--add-exports=java.base/sun.net.util=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED)

fail() { echo "cluster-up: $*" >&2; exit 1; }
rel() { case $1 in "$REPO"/*) echo "${1#"$REPO"/}" ;; *) echo "$1" ;; esac; }
pom_prop() { sed -n "s:.*<$2>\(.*\)</$2>.*:\1:p" "$1" | head -1; }

BEAM_VERSION=$(pom_prop "$HERE/jobserver/pom.xml" beam.version)
JOB_SERVICE_VERSION=$(pom_prop "$HERE/jobserver/pom.xml" beam.job.service.version)
FLINK_LINE=$(pom_prop "$HERE/jobserver/pom.xml" flink.line)
FLINK_VERSION=$(pom_prop "$HERE/cluster/pom.xml" flink.version)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2> /dev/null; }

host_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2> /dev/null; }

# The workers' Python environment: the project's wheel installed by deploy/worker/install.sh, again
# only when the package's sources changed (a stamp of their hashes).
worker_env() {
  local sum wheel
  sum=$(cd "$REPO" && find mnist_batch -name '*.py' -o -name '*.npz' | sort | xargs sha256sum | cat - setup.py requirements.txt | sha256sum | cut -d' ' -f1)
  if [ -f "$WORKER_VENV/.sources.sha256" ] && [ "$(cat "$WORKER_VENV/.sources.sha256")" = "$sum" ]; then return; fi
  echo "building the project's wheel and installing it into $(rel "$WORKER_VENV") (the workers' environment, ~20 s) ..."
  rm -rf "$CACHE/wheel" && mkdir -p "$CACHE/wheel"
  (cd "$REPO" && "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$CACHE/wheel" . > "$LOGS/wheel.log" 2>&1) ||
    fail "cannot build the project's wheel (log: $(rel "$LOGS/wheel.log"))"
  rm -rf "$REPO/build"
  wheel=$(ls "$CACHE"/wheel/*.whl)
  PYTHON=$(command -v python3.11 || command -v python3) "$REPO/deploy/worker/install.sh" "$wheel" "$WORKER_VENV" > "$LOGS/worker-venv.log" 2>&1 ||
    fail "cannot install the wheel into $(rel "$WORKER_VENV") (log: $(rel "$LOGS/worker-venv.log"))"
  echo "$sum" > "$WORKER_VENV/.sources.sha256"
  tail -1 "$LOGS/worker-venv.log"
}

# The first artifact mvn could not get (its messages vary with the case and Maven's version).
missing_artifact() {
  local art='[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:(jar|pom):[0-9][^ :,]*'
  { grep -oE "$art (was not found|could not be|is not)" "$1" | cut -d' ' -f1
    grep -oE "(Could not find artifact|Failure to find|not resolved: |could not be resolved: ) ?$art" "$1" | grep -oE "$art"
    grep -oE "$art" "$1" | grep -v '^mnist_batch\.deploy:'; } | head -1
}

# mvn dependency:copy-dependencies into $CACHE/<name>-lib, once per version of the pom.
resolve() {
  local name=$1 pom=$HERE/$1/pom.xml lib=$CACHE/$1-lib log=$LOGS/mvn-$1.log sum
  sum=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$lib/.pom.sha256" ] && [ "$(cat "$lib/.pom.sha256")" = "$sum" ]; then return; fi
  command -v mvn > /dev/null || fail "mvn not found (Maven fetches the Flink and Beam jars from Maven Central)"
  echo "resolving $(rel "$pom") from Maven Central into $(rel "$lib") (first use; log: $(rel "$log")) ..."
  rm -rf "$lib.tmp"
  if ! mvn -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$lib.tmp" > "$log" 2>&1; then
    local missing
    missing=$(missing_artifact "$log")
    fail "cannot get ${missing:-the dependencies of $(rel "$pom")} from Maven Central (log: $(rel "$log"))"
  fi
  echo "$sum" > "$lib.tmp/.pom.sha256"
  rm -rf "$lib" && mv "$lib.tmp" "$lib"
}

# The job server's classpath as one jar ($CACHE/jobserver.jar), remade when its lib is resolved again:
# every job ships the job server's classpath to Flink, one blob per entry (~160 jars took ~13 s of each
# job's start; one file ~1 s: deploy/flink/one_jar.py, docs/benchmarks.md issue 34).
one_jar() {
  local lib=$CACHE/jobserver-lib jar=$CACHE/jobserver.jar
  if [ -f "$jar" ] && [ "$(cat "$jar.sha256" 2> /dev/null)" = "$(cat "$lib/.pom.sha256")" ]; then return; fi
  echo "merging the job server's $(ls "$lib" | grep -c '\.jar$') jars into $(rel "$jar") (once; each job ships it to Flink as one blob) ..."
  rm -f "$jar.sha256"
  "$PY" "$HERE/one_jar.py" "$lib" "$jar" > /dev/null || fail "cannot merge $(rel "$lib") into $(rel "$jar")"
  cp "$lib/.pom.sha256" "$jar.sha256"
}

# A class must be in one of the jars of a lib folder.
need_class() {
  local lib=$1 class=$2
  "$PY" - "$lib" "$class" << 'EOF' || fail "$class is in no jar of $(rel "$lib") (delete it and rerun to resolve again)"
import glob, sys, zipfile
lib, cls = sys.argv[1], sys.argv[2].replace(".", "/") + ".class"
sys.exit(0 if any(cls in zipfile.ZipFile(j).namelist() for j in glob.glob(lib + "/*.jar")) else 1)
EOF
}

write_conf() {
  mkdir -p "$RUN/conf"
  cat > "$RUN/conf/config.yaml" << EOF
# Written by deploy/flink/cluster.sh: a loopback-only standalone session cluster.
jobmanager.rpc.address: localhost
jobmanager.rpc.port: $RPC_PORT
jobmanager.bind-host: localhost
rest.address: localhost
rest.bind-address: 127.0.0.1
rest.port: $REST_PORT
blob.server.port: $BLOB_PORT
taskmanager.host: localhost
taskmanager.bind-host: localhost
taskmanager.numberOfTaskSlots: $SLOTS
parallelism.default: $PARALLELISM
# TaskManagerRunner needs its memory given explicitly (Flink's scripts compute these).
taskmanager.cpu.cores: $SLOTS
taskmanager.memory.framework.heap.size: 128m
taskmanager.memory.task.heap.size: 512m
taskmanager.memory.framework.off-heap.size: 128m
taskmanager.memory.task.off-heap.size: 0m
taskmanager.memory.network.min: 256m
taskmanager.memory.network.max: 256m
taskmanager.memory.managed.size: 128m
taskmanager.memory.jvm-metaspace.size: 256m
taskmanager.memory.jvm-overhead.min: 192m
taskmanager.memory.jvm-overhead.max: 192m
# A lost TaskManager is noticed within seconds; a failed job is retried twice on what is left.
heartbeat.interval: 2000
heartbeat.timeout: 10000
restart-strategy.type: fixed-delay
restart-strategy.fixed-delay.attempts: 2
restart-strategy.fixed-delay.delay: 2 s
slot.request.timeout: 60000
web.tmpdir: $RUN/web
io.tmp.dirs: $RUN/tmp
blob.storage.directory: $RUN/blobs
EOF
  cat > "$RUN/conf/log4j.properties" << 'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.append = true
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
EOF
  mkdir -p "$RUN/web" "$RUN/tmp" "$RUN/blobs"
}

# start NAME CMD...: in its own session (so `down` stops it with its children), pid in $RUN/NAME.pid.
start() {
  local name=$1
  shift
  setsid "$@" > "$LOGS/$name.out" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

wait_port() {
  local name=$1 port=$2 log=$3 deadline=$((SECONDS + ${4:-90}))
  until port_open "$port"; do
    alive "$name" || fail "$name exited before listening on $port (log: $(rel "$log"))"
    [ $SECONDS -lt $deadline ] || fail "$name did not listen on $port in time (log: $(rel "$log"))"
    sleep 0.5
  done
}

flink_overview() { "$PY" -c "import json,urllib.request; d=json.load(urllib.request.urlopen('http://127.0.0.1:$REST_PORT/overview', timeout=5)); print(d['taskmanagers'], d['slots-total'], d['flink-version'])" 2> /dev/null; }

up() {
  mkdir -p "$CACHE" "$RUN" "$LOGS"
  for name in jobmanager jobserver $(seq -f host%g 1 "$TASKMANAGERS"); do
    alive "$name" && fail "already up ($name pid $(cat "$RUN/$name.pid")); make cluster-down first"
  done
  command -v java > /dev/null || fail "java not found (Flink and Beam's job server need Java 11 or 17)"
  [ -x "$PY" ] || fail "$PY not found (make install first)"
  local sdk
  sdk=$("$PY" -c 'import apache_beam; print(apache_beam.__version__)' 2> /dev/null) || fail "apache_beam not importable from $PY"
  [ "$sdk" = "$BEAM_VERSION" ] || fail "apache-beam $sdk in $(rel "$PY") but the job server is Beam $BEAM_VERSION (requirements.txt pins it; make install)"
  for port in $REST_PORT $RPC_PORT $BLOB_PORT $JOB_PORT $ARTIFACT_PORT $EXPANSION_PORT $POOL_PORT; do
    port_open "$port" && fail "port $port on 127.0.0.1 is in use (another cluster? make cluster-down, or set the *_PORT variables)"
  done
  command -v unshare > /dev/null || fail "unshare not found (util-linux): the worker hosts are Linux namespaces"

  local t0=$SECONDS
  # A failure from here on stops what was started (each failure is one line on stderr).
  trap 'down > /dev/null 2>&1' EXIT
  resolve cluster
  resolve jobserver
  one_jar
  need_class "$CACHE/cluster-lib" org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint
  need_class "$CACHE/cluster-lib" org.apache.flink.runtime.taskexecutor.TaskManagerRunner
  need_class "$CACHE/cluster-lib" org.apache.flink.runtime.webmonitor.WebSubmissionExtension
  need_class "$CACHE/jobserver-lib" org.apache.beam.runners.flink.FlinkJobServerDriver
  [ -f "$CACHE/jobserver-lib/beam-runners-flink-$FLINK_LINE-$BEAM_VERSION.jar" ] ||
    fail "org.apache.beam:beam-runners-flink-$FLINK_LINE:$BEAM_VERSION missing from $(rel "$CACHE/jobserver-lib")"
  [ -f "$CACHE/cluster-lib/flink-runtime-$FLINK_VERSION.jar" ] ||
    fail "org.apache.flink:flink-runtime:$FLINK_VERSION missing from $(rel "$CACHE/cluster-lib")"
  echo "checked: Flink $FLINK_VERSION ($(ls "$CACHE/cluster-lib" | grep -c '\.jar$') jars), Beam $BEAM_VERSION Flink runner ($(ls "$CACHE/jobserver-lib" | grep -c '\.jar$') jars; beam-runners-java-job-service $JOB_SERVICE_VERSION), Python SDK $sdk, $(java -version 2>&1 | head -1)"

  worker_env
  write_conf
  rm -rf "$LOGS"/jobmanager.* "$LOGS"/host* "$LOGS"/jobserver.*
  local conf=$RUN/conf log4j=(-Dlog4j.configurationFile="file:$RUN/conf/log4j.properties")
  start jobmanager java -Xms768m -Xmx768m -XX:MaxMetaspaceSize=256m "${JAVA_OPENS[@]}" \
    -Dlog.file="$LOGS/jobmanager.log" "${log4j[@]}" -cp "$CACHE/cluster-lib/*" \
    org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint --configDir "$conf"
  wait_port jobmanager "$REST_PORT" "$LOGS/jobmanager.log"
  for i in $(seq 1 "$TASKMANAGERS"); do start_host "$i"; done
  wait_taskmanagers
  for i in $(seq 1 "$TASKMANAGERS"); do wait_pool "$i"; done

  start jobserver java -Xmx1g "${JAVA_OPENS[@]}" -cp "$CACHE/jobserver.jar" \
    org.apache.beam.runners.flink.FlinkJobServerDriver --flink-master "localhost:$REST_PORT" \
    --job-host localhost --job-port "$JOB_PORT" --artifact-port "$ARTIFACT_PORT" \
    --expansion-port "$EXPANSION_PORT" --artifacts-dir "$RUN/artifacts"
  wait_port jobserver "$JOB_PORT" "$LOGS/jobserver.out"

  local pid
  pid() { cat "$RUN/$1.pid"; }
  echo "Flink $FLINK_VERSION JobManager   pid $(pid jobmanager)  REST + web UI http://127.0.0.1:$REST_PORT, rpc localhost:$RPC_PORT, blobs localhost:$BLOB_PORT  log $(rel "$LOGS/jobmanager.log")"
  for i in $(seq 1 "$TASKMANAGERS"); do
    echo "worker host flink-host-$i  pid $(pid "host$i")  a TaskManager ($SLOTS slots) + an SDK worker pool on 127.0.0.$((i + 1)):$POOL_PORT  python $(rel "$WORKER_VENV") (from the wheel)  logs $(rel "$LOGS/host$i")"
  done
  echo "Beam $BEAM_VERSION Flink job server  pid $(pid jobserver)  jobs localhost:$JOB_PORT, artifacts localhost:$ARTIFACT_PORT, expansion localhost:$EXPANSION_PORT  log $(rel "$LOGS/jobserver.out")"
  echo "cluster: ${overview%% *} TaskManagers, $(echo "$overview" | cut -d' ' -f2) slots; up in $((SECONDS - t0)) s"
  echo "runner options: $(runner_options)"
  trap - EXIT
}

# Worker host N (deploy/flink/host.sh) in its own mount, PID and UTS namespaces; as root, or as a user
# mapped to root in a user namespace of its own.
start_host() {
  local as_root=()
  [ "$(id -u)" = 0 ] || as_root=(--user --map-root-user)
  mkdir -p "$HOST_ROOT" "$LOGS/host$1"
  REPO=$REPO CACHE=$CACHE RUN=$RUN LOGS=$LOGS POOL_PORT=$POOL_PORT HOST_ROOT=$HOST_ROOT WORKER_VENV=$HOST_VENV JAVA_OPENS="${JAVA_OPENS[*]}" \
    start "host$1" unshare "${as_root[@]}" --mount --pid --uts --fork --mount-proc --propagation private --kill-child \
    "$HERE/host.sh" "$1"
}

# Until host N's worker pool listens on its own address.
wait_pool() {
  local deadline=$((SECONDS + 60))
  until host_port_open "127.0.0.$(($1 + 1))" "$POOL_PORT"; do
    alive "host$1" || fail "host$1 exited (logs: $(rel "$LOGS/host$1"))"
    [ $SECONDS -lt $deadline ] || fail "the worker pool of host$1 did not listen on 127.0.0.$(($1 + 1)):$POOL_PORT in time (log: $(rel "$LOGS/host$1/workerpool.out"))"
    sleep 0.5
  done
}

# Until the JobManager counts $TASKMANAGERS live TaskManagers (a killed one drops out after heartbeat.timeout).
wait_taskmanagers() {
  local deadline=$((SECONDS + 90))
  overview=""
  while :; do
    overview=$(flink_overview || true)
    [ "${overview%% *}" = "$TASKMANAGERS" ] && break
    for i in $(seq 1 "$TASKMANAGERS"); do
      alive "host$i" || fail "host$i exited (logs: $(rel "$LOGS/host$i"))"
    done
    [ $SECONDS -lt $deadline ] || fail "$TASKMANAGERS TaskManagers did not register with the JobManager in time (logs: $(rel "$LOGS"))"
    sleep 1
  done
}

# Restarts host N if it is not running (the fault tests kill one), then waits for it to register.
restart_host() {
  alive jobmanager || fail "the JobManager is not running (make cluster-up)"
  alive "host$1" || start_host "$1"
  wait_taskmanagers
  wait_pool "$1"
  echo "host$1 up (pid $(cat "$RUN/host$1.pid")); ${overview%% *} TaskManagers registered"
}

# Kills worker host N whole: every process of its PID namespace (a lost machine), at once.
kill_host() {
  alive "host$1" || fail "host$1 is not running"
  local pid
  pid=$(cat "$RUN/host$1.pid")
  kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done  # gone, not only signalled
  rm -f "$RUN/host$1.pid"
  echo "host$1 killed (its PID namespace: pid $pid and every process in it)"
  [ "${2:-}" = --no-wait ] && return
  local deadline=$((SECONDS + 30)) count  # until the JobManager counts it lost (heartbeat.timeout: 10 s)
  while count=$(flink_overview | cut -d' ' -f1) && [ "${count:-0}" -ge "$TASKMANAGERS" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
}

runner_options() {
  echo "--runner PortableRunner --job_endpoint localhost:$JOB_PORT --artifact_endpoint localhost:$ARTIFACT_PORT --environment_type EXTERNAL --environment_config workerpool:$POOL_PORT --parallelism $PARALLELISM"
}

down() {
  local any=0 name pid
  for name in jobserver $(cd "$RUN" 2> /dev/null && ls host*.pid 2> /dev/null | sed 's/\.pid$//') jobmanager; do
    [ -f "$RUN/$name.pid" ] || continue
    pid=$(cat "$RUN/$name.pid")
    if kill -0 "$pid" 2> /dev/null; then
      any=1
      kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2> /dev/null || break; sleep 0.25; done
      kill -KILL -- "-$pid" 2> /dev/null || true
      echo "stopped $name (pid $pid)"
    fi
    # The process group may hold children (the pool's harness processes) after its leader exited.
    kill -KILL -- "-$pid" 2> /dev/null || true
    rm -f "$RUN/$name.pid"
  done
  # Each job ships the job server's classpath (one jar) as a blob; a killed TaskManager leaves its copy.
  rm -rf "$RUN/tmp" "$RUN/web" "$RUN/blobs" "$RUN/artifacts"
  rmdir "$HOST_ROOT" 2> /dev/null || true  # the hosts' mount point (each host's disk went with its namespace)
  [ $any = 1 ] || echo "cluster-down: nothing running"
}

status() {
  local name rc=0
  for name in jobmanager $(cd "$RUN" 2> /dev/null && ls host*.pid 2> /dev/null | sed 's/\.pid$//') jobserver; do
    if alive "$name"; then echo "$name: up (pid $(cat "$RUN/$name.pid"))"; else echo "$name: down"; rc=1; fi
  done
  [ $rc = 0 ] && echo "runner options: $(runner_options)"
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  options) runner_options ;;
  restart-host) restart_host "${2:?usage: $0 restart-host N}" ;;
  kill-host) kill_host "${2:?usage: $0 kill-host N [--no-wait]}" "${3:-}" ;;
  *) echo "usage: $0 up|down|status|options|restart-host N|kill-host N" >&2; exit 2 ;;
esac

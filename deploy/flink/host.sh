#!/usr/bin/env bash
# One emulated worker host: a Flink TaskManager and its Beam SDK worker pool, sharing nothing with the
# launcher but the machine's loopback network. Started by deploy/flink/cluster.sh as
#
#   unshare --mount --pid --uts --fork --mount-proc --propagation private --kill-child deploy/flink/host.sh N
#
# so that it is PID 1 of its own PID namespace (killing it, or `cluster.sh kill-host N`, takes every
# process of the host), with its own hostname (flink-host-N) and its own mounts:
#   - its own disk: a tmpfs at $HOST_ROOT (the TaskManager's temporary folders, the harness's home);
#   - what a worker image holds, read-only: Flink's jars and the Python environment installed from the
#     project's wheel by deploy/worker/install.sh (never the checkout's .venv or sources);
#   - hidden under empty tmpfs mounts: the checkout and the folder that holds it, /tmp, the home folder:
#     a model, input or output path on the launcher's disk does not exist here;
#   - /etc/hosts naming 127.0.0.(N+1) `workerpool`: the job's --environment_config workerpool:PORT
#     reaches this host's own pool (each pool listens on its host's address only).
# The bucket settings a host has are the AWS_* variables it was started with (a pod spec's env).
set -euo pipefail
N=${1:?usage: host.sh N}
: "${REPO:?}" "${CACHE:?}" "${RUN:?}" "${LOGS:?}" "${POOL_PORT:?}" "${HOST_ROOT:?}"
WORKER_VENV=${WORKER_VENV:-$CACHE/worker-venv}
ADDRESS=127.0.0.$((N + 1))
H=$HOST_ROOT
hostname "flink-host-$N"
mount -t tmpfs -o size=4g,mode=0755 "host$N" "$H"
mkdir -p "$H/lib" "$H/python" "$H/conf" "$H/tmp" "$H/home" "$H/logs" "$H/bin"
ro_bind() { mount --bind "$1" "$2" && mount -o remount,bind,ro "$2"; }
ro_bind "$CACHE/cluster-lib" "$H/lib"
ro_bind "$WORKER_VENV" "$H/python"
mkdir -p "$LOGS/host$N" && mount --bind "$LOGS/host$N" "$H/logs"  # readable from the machine, as `kubectl logs`
cp "$REPO/deploy/flink/worker_pool.py" "$H/bin/"
# The interpreter the environment was made from (a worker image's own Python): kept visible at its path
# even where it lies under a folder hidden below (pyenv's in the home folder, say).
base=$(dirname "$(sed -n 's/^home = //p' "$WORKER_VENV/pyvenv.cfg")")
mkdir -p "$H/base" && ro_bind "$base" "$H/base"
sed -e "s|^io.tmp.dirs:.*|io.tmp.dirs: $H/tmp|" -e "s|^web.tmpdir:.*|web.tmpdir: $H/tmp/web|" \
  -e "s|^blob.storage.directory:.*|blob.storage.directory: $H/tmp/blobs|" "$RUN/conf/config.yaml" > "$H/conf/config.yaml"
cp "$RUN/conf/log4j.properties" "$H/conf/"
printf '127.0.0.1 localhost\n%s workerpool flink-host-%s\n::1 localhost ip6-localhost\n' "$ADDRESS" "$N" > "$H/hosts"
mount --bind "$H/hosts" /etc/hosts
# Nothing of the launcher's: the checkout (and the folder holding it), temporary folders, the home folder.
hide() { [ -d "$1" ] && [ "$1" != / ] && mount -t tmpfs -o size=1m,mode=0755 hidden "$1" || true; }
parent=$(dirname "$REPO")
hide "$REPO"
[ "$parent" = / ] || [ "$parent" = "$(dirname "$H")" ] || hide "$parent"
hide /tmp
hide "${HOME:-/root}"
if [ ! -d "$base/bin" ]; then mkdir -p "$base" && ro_bind "$H/base" "$base"; fi
export HOME=$H/home TMPDIR=$H/tmp PATH=$H/python/bin:/usr/local/bin:/usr/bin:/bin
unset PYTHONPATH VIRTUAL_ENV
cd "$H"
java -Xms640m -Xmx640m -XX:MaxDirectMemorySize=384m -XX:MaxMetaspaceSize=256m $JAVA_OPENS \
  -Dlog.file="$H/logs/taskmanager.log" -Dlog4j.configurationFile="file:$H/conf/log4j.properties" \
  -cp "$H/lib/*" org.apache.flink.runtime.taskexecutor.TaskManagerRunner --configDir "$H/conf" \
  > "$H/logs/taskmanager.out" 2>&1 &
tm=$!
python "$H/bin/worker_pool.py" "$ADDRESS" "$POOL_PORT" > "$H/logs/workerpool.out" 2>&1 &
pool=$!
trap 'kill -TERM $tm $pool 2> /dev/null; wait; exit 0' TERM INT
wait -n $tm $pool  # a host whose TaskManager or pool died is a lost host: everything else goes too
kill -KILL $tm $pool 2> /dev/null || true
exit 1

#!/usr/bin/env bash
# Scheduled wrapper (cron, Kubernetes CronJob): one incremental, committed run of `mnist-batch score`.
#
# - refuses to overlap: holds an exclusive flock on $MNIST_BATCH_LOCK; if another run holds it,
#   logs that and exits 75 (EX_TEMPFAIL) without starting anything;
# - exits with the scorer's exit code (0 ok, 2 bad argument/model/input, 4 too many errors, ...);
# - logs one summary line (the scorer's "scored N of M images ..." line) with a UTC timestamp,
#   to stdout and, when `logger` exists, to syslog (tag mnist-batch); the full output goes to
#   $MNIST_BATCH_LOG_DIR/score-RUNID.log.
#
# Environment: MNIST_BATCH_MODEL, MNIST_BATCH_INPUT, MNIST_BATCH_OUTPUT (runs root) are required.
# Optional: MNIST_BATCH_RUN_ID (default: unique, r + UTC time + 8 random hex digits, as the CLI's
# default; a fixed id that is already committed is refused unless --replace is passed), MNIST_BATCH_RUN_DATE (default: UTC date YYYY-MM-DD), MNIST_BATCH_EXPECT_MODEL_ID,
# MNIST_BATCH_LOCK (default: /tmp/mnist-batch-score.lock), MNIST_BATCH_LOG_DIR (default: /tmp),
# MNIST_BATCH_CMD (default: mnist-batch). Extra arguments are passed to `mnist-batch score`
# (e.g. Beam options: --runner DataflowRunner --project ...).
#
# Then monitor: with MNIST_BATCH_MONITOR_DIR set (a local folder), a successful score is followed by
# `mnist-batch monitor OUTPUT --output $MNIST_BATCH_MONITOR_DIR --fail-on $MNIST_BATCH_MONITOR_FAIL_ON`
# (default checks: drift,errors,low_confidence; with MNIST_BATCH_METRICS_FILE=PATH.prom, also
# --metrics-file PATH.prom for node_exporter), which rewrites monitor.html and runs.parquet there;
# its output goes to $MNIST_BATCH_LOG_DIR/monitor-RUNID.log, one line is logged, and the wrapper
# exits 5 when the new run is flagged (the FAILED lines are logged), else with the scorer's code.
set -uo pipefail

model="${MNIST_BATCH_MODEL:?set MNIST_BATCH_MODEL}"
input="${MNIST_BATCH_INPUT:?set MNIST_BATCH_INPUT}"
output="${MNIST_BATCH_OUTPUT:?set MNIST_BATCH_OUTPUT}"
run_id="${MNIST_BATCH_RUN_ID:-r$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')}"
run_date="${MNIST_BATCH_RUN_DATE:-$(date -u +%Y-%m-%d)}"
lock="${MNIST_BATCH_LOCK:-/tmp/mnist-batch-score.lock}"
log_dir="${MNIST_BATCH_LOG_DIR:-/tmp}"
read -r -a cmd <<< "${MNIST_BATCH_CMD:-mnist-batch}"

log() {
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) mnist-batch run $run_id: $*"
  echo "$line"
  if command -v logger > /dev/null 2>&1; then logger -t mnist-batch -- "$line" || true; fi
}

mkdir -p "$log_dir"
exec 9>> "$lock"
if ! flock -n 9; then
  log "another run holds $lock; not starting (exit 75)"
  exit 75
fi

args=(score --model "$model" --input "$input" --output "$output" --layout runs --incremental
      --run-id "$run_id" --run-date "$run_date")
if [ -n "${MNIST_BATCH_EXPECT_MODEL_ID:-}" ]; then args+=(--expect-model-id "$MNIST_BATCH_EXPECT_MODEL_ID"); fi

log_file="$log_dir/score-$run_id.log"
log "starting: ${cmd[*]} ${args[*]} $*"
# The scorer inherits the lock (fd 9): if this wrapper dies, no new run starts until the scorer ends.
"${cmd[@]}" "${args[@]}" "$@" > "$log_file" 2>&1
code=$?
summary="$(grep -E '^scored [0-9,]+ of [0-9,]+ images' "$log_file" | tail -n 1)"
if [ "$code" -eq 0 ]; then
  log "ok: ${summary:-no summary line} (log: $log_file)"
else
  log "FAILED with exit $code: ${summary:-$(tail -n 1 "$log_file")} (log: $log_file)"
  exit "$code"
fi

monitor_dir="${MNIST_BATCH_MONITOR_DIR:-}"
if [ -n "$monitor_dir" ]; then
  fail_on="${MNIST_BATCH_MONITOR_FAIL_ON:-drift,errors,low_confidence}"
  monitor_log="$log_dir/monitor-$run_id.log"
  monitor_args=(--output "$monitor_dir" --fail-on "$fail_on")
  if [ -n "${MNIST_BATCH_METRICS_FILE:-}" ]; then monitor_args+=(--metrics-file "$MNIST_BATCH_METRICS_FILE"); fi
  "${cmd[@]}" monitor "$output" "${monitor_args[@]}" > "$monitor_log" 2>&1
  code=$?
  latest="$(grep -E '^latest run ' "$monitor_log" | tail -n 1)"
  if [ "$code" -eq 0 ] && { [ -z "$latest" ] || [ "${latest##*: }" = ok ]; }; then
    log "monitor ok: ${latest:-no committed run yet} (page: $monitor_dir/monitor.html)"
  elif [ "$code" -eq 0 ]; then
    # Flagged only on checks outside --fail-on: the night passes, and the log says what was flagged.
    while IFS= read -r line; do log "monitor noted (not in --fail-on $fail_on): ${line#  }"; done \
      < <(grep -E '^  (warn|alert): ' "$monitor_log")
    log "monitor passed --fail-on $fail_on; $latest (page: $monitor_dir/monitor.html)"
  elif [ "$code" -eq 5 ]; then
    while IFS= read -r line; do log "monitor FLAGGED: ${line#mnist-batch monitor: FAILED }"; done \
      < <(grep -E '^mnist-batch monitor: FAILED ' "$monitor_log")
    log "monitor FLAGGED the run (exit 5; page: $monitor_dir/monitor.html, log: $monitor_log)"
  else
    log "monitor FAILED with exit $code: $(tail -n 1 "$monitor_log") (log: $monitor_log)"
  fi
fi
exit "$code"

#!/usr/bin/env bash
# Launches mnist_batch scoring on Dataflow, as a classic job or through the flex template.
#
#   deploy/dataflow/launch.sh classic      # python pipelines/score.py ... --runner DataflowRunner --setup_file ./setup.py
#   deploy/dataflow/launch.sh flex-build   # gcloud dataflow flex-template build (spec JSON on GCS, image from build_image.sh)
#   deploy/dataflow/launch.sh flex-run     # gcloud dataflow flex-template run with the template's parameters
#
# Settings (environment): PROJECT, REGION, BUCKET (gs://BUCKET without the scheme), MODEL (gs://.../cnn.keras),
# INPUT (gs://.../scans/), OUTPUT (runs root, gs://.../scored), IMAGE (Artifact Registry image built by
# deploy/build_image.sh; classic runs use it as --sdk_container_image when set), RUN_ID (default: unique,
# r + UTC time + random hex), RUN_DATE (default: UTC date YYYY-MM-DD), EXPECT_MODEL_ID (optional), DRY_RUN=1 prints
# the command instead of running it. Extra arguments are appended (Beam options for classic runs,
# gcloud flags for flex runs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mode="${1:?usage: launch.sh classic|flex-build|flex-run [extra args...]}"
shift
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET (without gs://)}"
RUN_ID="${RUN_ID:-r$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')}"
RUN_DATE="${RUN_DATE:-$(date -u +%Y-%m-%d)}"
TEMPLATE="${TEMPLATE:-gs://$BUCKET/templates/mnist-batch-score.json}"

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

case "$mode" in
  classic)
    : "${MODEL:?set MODEL}" "${INPUT:?set INPUT}" "${OUTPUT:?set OUTPUT}"
    cd "$repo"
    args=(--model "$MODEL" --input "$INPUT" --output "$OUTPUT" --layout runs --incremental
          --run-id "$RUN_ID" --run-date "$RUN_DATE"
          --runner DataflowRunner --project "$PROJECT" --region "$REGION"
          --temp_location "gs://$BUCKET/tmp" --staging_location "gs://$BUCKET/staging"
          --job_name "mnist-batch-score-$(echo "$RUN_ID" | tr 'A-Z_.:+' 'a-z----')"
          --setup_file ./setup.py)
    if [ -n "${EXPECT_MODEL_ID:-}" ]; then args+=(--expect-model-id "$EXPECT_MODEL_ID"); fi
    if [ -n "${IMAGE:-}" ]; then args+=(--sdk_container_image "$IMAGE" --sdk_location container); fi
    run python pipelines/score.py "${args[@]}" "$@"
    ;;
  flex-build)
    : "${IMAGE:?set IMAGE (deploy/build_image.sh IMAGE --push first)}"
    run gcloud dataflow flex-template build "$TEMPLATE" --image "$IMAGE" --sdk-language PYTHON \
      --metadata-file "$here/metadata.json" --project "$PROJECT" "$@"
    ;;
  flex-run)
    : "${MODEL:?set MODEL}" "${INPUT:?set INPUT}" "${OUTPUT:?set OUTPUT}" "${IMAGE:?set IMAGE}"
    params="model=$MODEL,input=$INPUT,output=$OUTPUT,incremental=true,run_id=$RUN_ID,run_date=$RUN_DATE"
    params+=",sdk_container_image=$IMAGE"
    if [ -n "${EXPECT_MODEL_ID:-}" ]; then params+=",expect_model_id=$EXPECT_MODEL_ID"; fi
    run gcloud dataflow flex-template run "mnist-batch-score-$(echo "$RUN_ID" | tr 'A-Z_.:+' 'a-z----')" \
      --template-file-gcs-location "$TEMPLATE" --project "$PROJECT" --region "$REGION" \
      --temp-location "gs://$BUCKET/tmp" --parameters "$params" "$@"
    ;;
  *)
    echo "launch.sh: unknown mode $mode (classic, flex-build, flex-run)" >&2
    exit 2
    ;;
esac

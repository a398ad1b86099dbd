#!/usr/bin/env bash
# Builds (and with --push, pushes) the mnist_batch worker/launcher image from the repository root,
# with the versions pinned in deploy/versions.env.
#   deploy/build_image.sh IMAGE[:TAG] [--gpu] [--push]
# e.g. deploy/build_image.sh europe-west1-docker.pkg.dev/PROJECT/mnist/mnist-batch:0.1.0 --push
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
image="${1:?usage: deploy/build_image.sh IMAGE[:TAG] [--gpu] [--push]}"
shift
dockerfile="$here/Dockerfile"
push=0
for arg in "$@"; do
  case "$arg" in
    --gpu) dockerfile="$here/Dockerfile.gpu" ;;
    --push) push=1 ;;
    *) echo "build_image.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
# shellcheck source=versions.env
source "$here/versions.env"
docker build -f "$dockerfile" \
  --build-arg "PYTHON_VERSION=$PYTHON_VERSION" \
  --build-arg "BEAM_VERSION=$BEAM_VERSION" \
  --build-arg "FLEX_LAUNCHER_IMAGE=$FLEX_LAUNCHER_IMAGE" \
  -t "$image" "$repo"
if [ "$push" = 1 ]; then
  docker push "$image"
fi

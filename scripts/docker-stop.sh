#!/usr/bin/env bash
# `make docker-stop`: stops and removes the container CONTAINER; the volume
# VOLUME stays. Called by the Makefile with DOCKER, CONTAINER and VOLUME
# set.
set -euo pipefail

: "${DOCKER:?}" "${CONTAINER:?}" "${VOLUME:?}"

if $DOCKER container inspect "$CONTAINER" >/dev/null 2>&1; then
    $DOCKER stop "$CONTAINER" >/dev/null
    $DOCKER rm "$CONTAINER" >/dev/null
    echo "stopped and removed $CONTAINER; the data stays in volume $VOLUME ($DOCKER volume rm $VOLUME deletes it)"
else
    echo "no container named $CONTAINER"
fi

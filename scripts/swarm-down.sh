#!/usr/bin/env bash
# `make swarm-down`: removes the stack STACK and waits up to 60 s for its
# services, containers and networks to be gone (the volume STACK_data
# stays); then leaves the swarm if swarm-up created it (SWARM_MARKER names
# its node) and nothing else runs on it. Called by the Makefile with
# DOCKER, STACK and SWARM_MARKER set.
set -euo pipefail

: "${DOCKER:?}" "${STACK:?}" "${SWARM_MARKER:?}"

if [ "$($DOCKER info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
    echo "no swarm active"
    rm -f "$SWARM_MARKER"
    exit 0
fi

# Whether anything labelled as part of the stack is left.
stack_left() {
    local label=label=com.docker.stack.namespace=$STACK
    [ -n "$($DOCKER service ls -q --filter "$label")" ] ||
        [ -n "$($DOCKER ps -aq --filter "$label")" ] ||
        [ -n "$($DOCKER network ls -q --filter "$label")" ]
}

stacks=$($DOCKER stack ls --format '{{.Name}}' || true)
if grep -qx "$STACK" <<<"$stacks"; then
    $DOCKER stack rm "$STACK"
    printf 'waiting for the stack to be gone'
    deadline=$(($(date +%s) + 60))
    while stack_left; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo
            echo "stack $STACK still not gone after 60 s" >&2
            exit 1
        fi
        printf '.'
        sleep 1
    done
    echo
    echo "removed stack $STACK; the data stays in volume ${STACK}_data ($DOCKER volume rm ${STACK}_data deletes it)"
else
    echo "no stack named $STACK"
fi

if [ -f "$SWARM_MARKER" ]; then
    if [ "$(cat "$SWARM_MARKER")" != "$($DOCKER info -f '{{.Swarm.NodeID}}')" ]; then
        echo "the swarm make swarm-up created is gone; this one was made otherwise: staying in it"
    elif [ -n "$($DOCKER service ls -q)" ]; then
        echo "other services run on this swarm: staying in it (docker swarm leave --force leaves it)"
        exit 0
    else
        $DOCKER swarm leave --force >/dev/null
        echo "left the single-node swarm make swarm-up created"
        $DOCKER network rm docker_gwbridge >/dev/null 2>&1 || true
    fi
    rm -f "$SWARM_MARKER"
fi

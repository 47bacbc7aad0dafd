#!/usr/bin/env bash
# `make swarm-up`: deploys the stack in deploy/swarm.yaml as STACK on the
# swarm this engine belongs to, making this node a single-node swarm (noted
# in SWARM_MARKER, for swarm-down) when none is active; rolls a rebuilt
# IMAGE:latest out; waits up to SWARM_WAIT seconds for COLORSORT_REPLICAS
# healthy replicas, then says how to reach, watch and stop the stack. With
# COLORSORT_ENDPOINT_MODE=vip the routing mesh publishes COLORSORT_PORT
# (deploy/swarm-ingress.yaml); with dnsrr the service is reached from the
# network STACK_net. Called by the Makefile with DOCKER, IMAGE, STACK,
# COLORSORT_REPLICAS, COLORSORT_ENDPOINT_MODE, COLORSORT_PORT, SWARM_WAIT,
# SWARM_MARKER and DOCKER_ROOT set.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

: "${DOCKER:?}" "${IMAGE:?}" "${STACK:?}" "${COLORSORT_REPLICAS:?}" "${COLORSORT_ENDPOINT_MODE:?}"
: "${COLORSORT_PORT:?}" "${SWARM_WAIT:?}" "${SWARM_MARKER:?}" "${DOCKER_ROOT:?}"

files=(-c deploy/swarm.yaml)
case "$COLORSORT_ENDPOINT_MODE" in
    vip) files+=(-c deploy/swarm-ingress.yaml) ;;
    dnsrr) ;;
    *)
        echo "COLORSORT_ENDPOINT_MODE must be vip or dnsrr, not $COLORSORT_ENDPOINT_MODE" >&2
        exit 2
        ;;
esac

state=$($DOCKER info -f '{{.Swarm.LocalNodeState}}')
if [ "$state" = inactive ]; then
    echo "no swarm active: docker swarm init --advertise-addr 127.0.0.1"
    $DOCKER swarm init --advertise-addr 127.0.0.1 >/dev/null
    mkdir -p "$(dirname "$SWARM_MARKER")"
    $DOCKER info -f '{{.Swarm.NodeID}}' >"$SWARM_MARKER"
elif [ "$state" != active ]; then
    echo "this node's swarm state is '$state'" >&2
    exit 1
fi
[ "$($DOCKER info -f '{{.Swarm.ControlAvailable}}')" = true ] || {
    echo "this node is not a swarm manager" >&2
    exit 1
}

service=${STACK}_colorsort
image_id=$($DOCKER image inspect -f '{{.Id}}' "$IMAGE:latest")
running_id=$($DOCKER service inspect -f '{{index .Spec.Labels "colorsort.image-id"}}' "$service" 2>/dev/null || true)
# The variables deploy/swarm.yaml reads.
stack_env=("COLORSORT_IMAGE=$IMAGE:latest" "COLORSORT_REPLICAS=$COLORSORT_REPLICAS"
    "COLORSORT_ENDPOINT_MODE=$COLORSORT_ENDPOINT_MODE" "COLORSORT_PORT=$COLORSORT_PORT")
deploy=(stack deploy --resolve-image never "${files[@]}" "$STACK")
show "${stack_env[@]}" "$DOCKER" "${deploy[@]}"
(
    export "${stack_env[@]}"
    $DOCKER "${deploy[@]}"
)
$DOCKER service update --detach --label-add "colorsort.image-id=$image_id" "$service" >/dev/null
if [ -n "$running_id" ] && [ "$running_id" != "$image_id" ]; then
    echo "$IMAGE:latest was rebuilt: rolling it out (docker service update --force)"
    $DOCKER service update --detach --force "$service" >/dev/null
fi

printf 'waiting for %s replicas to be healthy' "$COLORSORT_REPLICAS"
deadline=$(($(date +%s) + SWARM_WAIT))
while :; do
    replicas=$($DOCKER service ls --filter "name=$service" --format '{{.Name}} {{.Replicas}}' |
        awk -v s="$service" '$1 == s { print $2 }' || true)
    update=$($DOCKER service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$service")
    case "$update" in
        updating | rollback_started) ;;
        *) [ "$replicas" = "$COLORSORT_REPLICAS/$COLORSORT_REPLICAS" ] && break ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo
        echo "not all replicas healthy after $SWARM_WAIT s ($replicas, update: ${update:-none}):" >&2
        $DOCKER service ps --no-trunc "$service" >&2
        exit 1
    fi
    printf '.'
    sleep 1
done
echo " $replicas"

tasks=$($DOCKER ps -q --filter "label=com.docker.swarm.service.name=$service" --filter health=healthy || true)
task=${tasks%%$'\n'*}
fp=$([ -n "$task" ] && $DOCKER exec "$task" /colorsort key --fingerprint || echo '(no task on this node)')
echo "stack $STACK: service $service, $replicas replicas, key $fp"
echo ""
if [ "$COLORSORT_ENDPOINT_MODE" = vip ]; then
    echo "  reach it:     port $COLORSORT_PORT of any node (routing mesh), e.g."
    echo "                colorsort send --host 127.0.0.1:$COLORSORT_PORT IMAGE..."
    if ! "./$DOCKER_ROOT/colorsort" ping --host "127.0.0.1:$COLORSORT_PORT" >/dev/null 2>&1; then
        echo "  WARNING:      nothing answers on 127.0.0.1:$COLORSORT_PORT: the routing mesh needs IPVS, which this"
        echo "                kernel may lack; make swarm-up COLORSORT_ENDPOINT_MODE=dnsrr works without it"
    fi
else
    echo "  reach it:     from a container on the network ${STACK}_net, as colorsort:6666, e.g."
    echo "                $DOCKER run --rm --network ${STACK}_net -v \"\$PWD/images:/in:ro\" \\"
    echo "                    $IMAGE send --host colorsort:6666 /in"
fi
echo "  tasks:        $DOCKER service ps $service"
echo "  logs:         $DOCKER service logs -f $service"
echo "  data:         volume ${STACK}_data: $DOCKER volume inspect -f '{{ .Mountpoint }}' ${STACK}_data"
echo "  stop:         make swarm-down"

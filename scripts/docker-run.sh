#!/usr/bin/env bash
# `make docker-run`: runs the image IMAGE:VERSION detached as CONTAINER,
# hardened (HARDENING), on DOCKER_PORT with its data in VOLUME, replacing a
# container left by an earlier run (the volume, and with it the key and the
# stored files, is kept); waits up to 60 s for it to answer, then says how
# to reach, watch and stop it. Called by the Makefile with DOCKER, IMAGE,
# VERSION, CONTAINER, VOLUME, DOCKER_PORT and HARDENING set.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

: "${DOCKER:?}" "${IMAGE:?}" "${VERSION:?}" "${CONTAINER:?}" "${VOLUME:?}" "${DOCKER_PORT:?}" "${HARDENING:?}"
read -ra hardening <<<"$HARDENING"

if ! $DOCKER volume inspect "$VOLUME" >/dev/null 2>&1; then
    $DOCKER volume create "$VOLUME" >/dev/null
    echo "created volume $VOLUME"
fi
if $DOCKER container inspect "$CONTAINER" >/dev/null 2>&1; then
    echo "a container named $CONTAINER exists: stopping and replacing it (the volume is kept)"
    $DOCKER stop "$CONTAINER" >/dev/null
    $DOCKER rm "$CONTAINER" >/dev/null
fi
run=(run -d --name "$CONTAINER" --restart unless-stopped
    -p "$DOCKER_PORT:6666" -v "$VOLUME:/data" "${hardening[@]}"
    "$IMAGE:$VERSION")
show "$DOCKER" "${run[@]}"
$DOCKER "${run[@]}" >/dev/null

printf 'waiting for the server'
for _ in $(seq 60); do
    if $DOCKER exec "$CONTAINER" /colorsort ping >/dev/null 2>&1; then break; fi
    if [ "$($DOCKER inspect -f '{{.State.Running}}' "$CONTAINER")" != true ]; then
        echo
        echo "the container stopped; its log:"
        $DOCKER logs "$CONTAINER"
        exit 1
    fi
    printf '.'
    sleep 1
done
echo
$DOCKER exec "$CONTAINER" /colorsort ping >/dev/null || {
    echo "no answer after 60 s; see: $DOCKER logs $CONTAINER"
    exit 1
}
echo "$CONTAINER ($IMAGE:$VERSION) is up on port $DOCKER_PORT; key $($DOCKER exec "$CONTAINER" /colorsort key --fingerprint)"
# The whole log is read before it is searched: `grep -m1` leaving the pipe
# early would fail the pipeline.
log=$($DOCKER logs "$CONTAINER" 2>&1)
mode=$(grep -m1 'known senders: ' <<<"$log" | sed 's/.*known senders: //' || true)
echo "known senders: ${mode:-(not in the log; see $DOCKER logs $CONTAINER)}"
case "$mode" in off*)
    echo "  to require signatures: put an allowed_signers file in the volume as /data/allowed_signers,"
    echo "  then: $DOCKER kill -s HUP $CONTAINER"
    ;;
esac
echo ""
echo "  logs:         $DOCKER logs -f $CONTAINER"
echo "  key:          $DOCKER exec $CONTAINER /colorsort key > server.pub"
echo "  fingerprint:  $DOCKER exec $CONTAINER /colorsort key --fingerprint"
echo "                (compare with the 'key SHA256:...' in the log, and what 'colorsort send' pins)"
echo "  signers:      edit allowed_signers in the volume; $DOCKER kill -s HUP $CONTAINER rereads it"
echo "  send:         colorsort send --host 127.0.0.1:$DOCKER_PORT IMAGE..."
echo "  files:        $DOCKER exec $CONTAINER /colorsort stats"
echo "                on the host, under red/ green/ blue/ not_trusted/ in:"
echo "                $DOCKER volume inspect -f '{{ .Mountpoint }}' $VOLUME"
echo "  stop:         make docker-stop"

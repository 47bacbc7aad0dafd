#!/usr/bin/env bash
# Test of the Swarm stack (deploy/swarm.yaml) on a single-node swarm, run by
# `make swarm-test`.
#
# It deploys the stack with three replicas under a name of its own and
# checks: every replica healthy and hardened, one key on the volume served
# by every replica (asked in each task's container, and at each task's
# address from a client container, the addresses being what tasks.colorsort
# resolves to on the stack's network); a bulk `colorsort send` from a client
# container through the service name; a rolling restart of every replica
# (`docker service update --force`) while sends run; a killed task replaced;
# and scaling to 5 and back to 2 while sends run. Every upload a send
# acknowledged must be on the volume with the bytes sent, and the class
# folders must hold nothing else. It prints how many uploads were
# acknowledged, how many were lost (the test fails unless none), how many
# needed a retry, and the longest one upload took during the restart (from
# a one-connection send whose per-file lines are timed as they arrive).
#
# The endpoint mode is COLORSORT_ENDPOINT_MODE, dnsrr unless set: the
# clients are containers on the stack's network, so no port is published
# and the test needs no IPVS. With no swarm active it makes this node a
# single-node swarm and leaves it at the end (unless other services run on
# it by then). On a swarm of several nodes the test is SKIPPED, since the
# checks look at the tasks' containers on this node, and so it is on a node
# that is a worker.
#
# Isolation: the stack is colorsort-test-PID (COLORSORT_TEST_STACK to choose
# another name; a stack of that name that exists already is refused), so
# its service, network and volume are colorsort-test-PID_colorsort, _net
# and _data, and the image is tagged colorsort:test-RUN. The stack, its
# volume, the client containers and the tag are removed on exit, pass or
# fail; a `colorsort` stack, the colorsort_data volume and colorsort:latest
# are never touched.
#
# Needs a Docker engine, bash, tar and sha256sum; python3 and nsenter (as
# root) for the DNS check, which is otherwise SKIPPED.
set -eEuo pipefail
shopt -s inherit_errexit
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
TEST_NAME="swarm test"
POLL_SECONDS=0.5
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
DOCKER=${DOCKER:-docker}
RUN="$$-$(date +%s)"
STACK=${COLORSORT_TEST_STACK:-colorsort-test-$$}
SERVICE=${STACK}_colorsort
NET=${STACK}_net
VOLUME=${STACK}_data
LABEL="colorsort.test=$RUN"
IMAGE="colorsort:test-$RUN"
ENDPOINT_MODE=${COLORSORT_ENDPOINT_MODE:-dnsrr}
REPLICAS=3
SERVICE_UID=10001
MEMORY_LIMIT=536870912
# Deadlines, in seconds.
HEALTHY_WAIT=120
GONE_WAIT=60
# Client containers: hardened as the server is.
CLIENT_FLAGS=(--read-only --cap-drop ALL --security-opt no-new-privileges)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/colorsort-swarm-test.XXXXXX")
BG_PIDS=()
STARTED=$(date +%s)
SWARM_CREATED=0
STACK_DEPLOYED=0


stack_gone() {
    [ -z "$($DOCKER service ls -q --filter "label=com.docker.stack.namespace=$STACK")" ] &&
        [ -z "$($DOCKER ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] &&
        [ -z "$($DOCKER network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ]
}

cleanup() {
    local rc=$? pid c i
    trap - EXIT INT TERM ERR
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    # Client containers outlive a killed `docker run`.
    for c in $($DOCKER ps -aq --filter "label=$LABEL" 2>/dev/null || true); do
        $DOCKER rm -f "$c" >/dev/null 2>&1 || true
    done
    if [ "$STACK_DEPLOYED" = 1 ]; then
        if [ "$rc" -ne 0 ]; then
            $DOCKER service ps --no-trunc "$SERVICE" >&2 2>/dev/null || true
            for c in $($DOCKER ps -aq --filter "label=com.docker.swarm.service.name=$SERVICE" 2>/dev/null | head -n 6); do
                printf -- '--- last log lines of %s\n' "$($DOCKER inspect -f '{{.Name}}' "$c" 2>/dev/null)" >&2
                $DOCKER logs --tail 10 "$c" 2>&1 | sed 's/^/    /' >&2 || true
            done
        fi
        $DOCKER stack rm "$STACK" >/dev/null 2>&1 || true
        for i in $(seq $((GONE_WAIT * 2))); do
            stack_gone && break
            sleep 0.5
        done
        stack_gone || echo "stack $STACK still not gone after ${GONE_WAIT}s" >&2
        $DOCKER volume rm "$VOLUME" >/dev/null 2>&1 || echo "could not remove volume $VOLUME" >&2
    fi
    $DOCKER rmi "$IMAGE" >/dev/null 2>&1 || true
    if [ "$SWARM_CREATED" = 1 ]; then
        if [ -z "$($DOCKER service ls -q 2>/dev/null)" ]; then
            $DOCKER swarm leave --force >/dev/null 2>&1 || echo "could not leave the swarm this test created" >&2
            # Made by swarm init; left behind by swarm leave.
            $DOCKER network rm docker_gwbridge >/dev/null 2>&1 || true
        else
            echo "other services run on the swarm this test created: staying in it" >&2
        fi
    fi
    rm -rf "$WORK"
    if [ "$rc" -ne 0 ]; then
        echo "swarm test FAILED after $(($(date +%s) - STARTED))s (cleaned up what run $RUN made)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "FAIL: unexpected error at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Functions -------------------------------------------------------------


# The running containers of the service's tasks on this node, healthy ones
# only with `healthy`.
tasks() {
    local filters=(--filter "label=com.docker.swarm.service.name=$SERVICE" --filter status=running)
    [ "${1:-}" != healthy ] || filters+=(--filter health=healthy)
    $DOCKER ps -q --no-trunc "${filters[@]}"
}

# Whether the service runs exactly N tasks, all healthy, with no update
# under way. (Swarm counts a task with a health check as running only once
# it is healthy; the containers are counted too, since a stopping one is
# still running.)
converged() {
    local n=$1 replicas state
    replicas=$($DOCKER service ls --filter "name=$SERVICE" --format '{{.Name}} {{.Replicas}}' |
        awk -v s="$SERVICE" '$1 == s { print $2 }')
    state=$($DOCKER service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$SERVICE")
    [ "$replicas" = "$n/$n" ] || return 1
    case $state in updating | rollback_started | rollback_paused | paused) return 1 ;; esac
    [ "$(tasks healthy | wc -l)" = "$n" ] && [ "$(tasks | wc -l)" = "$n" ]
}

# client MOUNT ARGS...: runs the image as a client on the stack's network,
# with MOUNT (a -v argument, or empty) as its only volume.
client() {
    local mount=$1
    shift
    local flags=(--rm --label "$LABEL" --network "$NET" "${CLIENT_FLAGS[@]}")
    [ -z "$mount" ] || flags+=(-v "$mount")
    $DOCKER run "${flags[@]}" "$IMAGE" "$@"
}

# logged CONTAINER PATTERN: whether a log line matches. (The log is read
# whole first: `grep -q` in a pipe could cut it short, and pipefail would
# then count the writer's SIGPIPE as no match.)
logged() {
    local text
    text=$($DOCKER logs "$1" 2>&1)
    grep -q -- "$2" <<<"$text"
}

task_ip() {
    $DOCKER inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"
}

# resolve CONTAINER NAME: the IPv4 addresses that Docker's DNS on the
# stack's network gives for NAME, asked from CONTAINER's network namespace.
resolve() {
    local pid
    pid=$($DOCKER inspect -f '{{.State.Pid}}' "$1")
    nsenter -t "$pid" -n python3 - "$2" <<'EOF'
import socket, struct, sys

name = sys.argv[1]
query = struct.pack(">HHHHHH", 0x4353, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
query += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(query, ("127.0.0.11", 53))
reply = s.recv(65535)
ident, flags, _, answers = struct.unpack(">HHHH", reply[:8])
if ident != 0x4353 or flags & 0x000F:
    sys.exit(f"DNS error for {name}: rcode {flags & 0x000F}")
i = len(query)
for _ in range(answers):
    if reply[i] & 0xC0 == 0xC0:
        i += 2
    else:
        while reply[i]:
            i += reply[i] + 1
        i += 1
    rtype, _, _, length = struct.unpack(">HHIH", reply[i:i + 10])
    i += 10
    if rtype == 1:
        print(socket.inet_ntoa(reply[i:i + length]))
    i += length
EOF
}

# make_batch DIR SOURCE BATCH COUNT: COUNT images of one pixel each in DIR,
# of colours that no other batch of any source (0 to 15) has, and DIR.sums
# with their SHA-256s.
make_batch() {
    local dir=$1 source=$2 batch=$3 count=$4 i n pixel
    if [ "$count" -ge 4096 ] || [ "$batch" -ge 256 ]; then fail "batch $batch of $count images: out of colours"; fi
    mkdir -p "$dir"
    for ((i = 0; i < count; i++)); do
        n=$(((source << 20) + (batch << 12) + i))
        # Blue, green, red, then a byte of row padding.
        printf -v pixel '\\x%02x\\x%02x\\x%02x\\x00' $(((n >> 16) & 255)) $(((n >> 8) & 255)) $((n & 255))
        printf '%b' "$BMP_HEAD$pixel" >"$dir/s$source-b$batch-$i.bmp"
    done
    (cd "$dir" && sha256sum -- *.bmp) >"$dir.sums"
}

# send_batch DIR JOBS OUT: `colorsort send --json` of DIR from a client
# container through the service name; stdout lines go to OUT, each after
# the time it arrived (seconds since the epoch), stderr to OUT.err. Returns
# send's exit code.
send_batch() {
    local dir=$1 jobs=$2 out=$3 line
    client "$dir:/in:ro" send --json -j "$jobs" --host colorsort:6666 /in 2>"$out.err" |
        while IFS= read -r line; do
            printf '%s %s\n' "$EPOCHREALTIME" "$line"
        done >"$out"
}

# load SOURCE JOBS COUNT STOP: sends batches of COUNT new images with JOBS
# connections, one batch after the other, until the file STOP exists: the
# batch under way when it appears is the last. Each batch's exit code is
# appended to $WORK/load-SOURCE.rc, as `BATCH RC`.
load() {
    local source=$1 jobs=$2 count=$3 stop=$4 batch=0 rc
    while [ ! -e "$stop" ]; do
        make_batch "$WORK/in/s$source-b$batch" "$source" "$batch" "$count"
        rc=0
        send_batch "$WORK/in/s$source-b$batch" "$jobs" "$WORK/out/s$source-b$batch" || rc=$?
        echo "$batch $rc" >>"$WORK/load-$source.rc"
        batch=$((batch + 1))
    done
}

# start_load SOURCE JOBS COUNT: starts `load` in the background.
start_load() {
    rm -f "$WORK/stop-$1"
    load "$1" "$2" "$3" "$WORK/stop-$1" &
    BG_PIDS+=("$!")
    LOAD_PIDS+=("$!")
}

# stop_load SOURCE...: ends the loads, waits for them, and fails if a send
# failed. Sets BATCHES to the number of sends they made.
stop_load() {
    local s pid batches=0 batch rc
    for s in "$@"; do touch "$WORK/stop-$s"; done
    for pid in "${LOAD_PIDS[@]}"; do
        wait "$pid" || fail "a load loop failed"
    done
    LOAD_PIDS=()
    for s in "$@"; do
        while read -r batch rc; do
            [ "$rc" = 0 ] || {
                cat "$WORK/out/s$s-b$batch" "$WORK/out/s$s-b$batch.err" >&2
                fail "colorsort send of batch $batch of source $s exited $rc"
            }
            batches=$((batches + 1))
        done <"$WORK/load-$s.rc"
    done
    BATCHES=$batches
}

# ingest OUT DIR: records the uploads OUT reports, files of DIR, in the
# ledger: `STORED SHA` for each one acknowledged (stored, or answered as a
# duplicate of STORED). Adds to INGESTED, DUPS and RETRIED, and keeps the
# most attempts in MOST_ATTEMPTS.
ingest() {
    local out=$1 dir=$2 json re path result stored attempts
    declare -A sums
    local sum name
    while read -r sum name; do sums[$name]=$sum; done <"$dir.sums"
    re='^[0-9.]+ \{"path":"/in/([^"]+)","result":"(stored|duplicate|failed)","stored":("([^"]*)"|null),.*"attempts":([0-9]+)\}$'
    while IFS= read -r json; do
        [[ $json =~ $re ]] || fail "unexpected line from colorsort send: $json"
        path=${BASH_REMATCH[1]} result=${BASH_REMATCH[2]} stored=${BASH_REMATCH[4]} attempts=${BASH_REMATCH[5]}
        [ "$result" != failed ] || fail "colorsort send reports $path failed: $json"
        [ -n "${sums[$path]:-}" ] || fail "colorsort send reports a file it was not given: $path"
        echo "$stored ${sums[$path]}" >>"$LEDGER"
        [ "$result" = stored ] || DUPS=$((DUPS + 1))
        [ "$attempts" = 1 ] || RETRIED=$((RETRIED + 1))
        [ "$attempts" -le "$MOST_ATTEMPTS" ] || MOST_ATTEMPTS=$attempts
        INGESTED=$((INGESTED + 1))
        unset "sums[$path]"
    done <"$out"
    [ "${#sums[@]}" = 0 ] || { cat "$out.err" >&2; fail "colorsort send did not report ${#sums[@]} of the files in $dir"; }
}

# ingest_load SOURCE: ingests every batch of a load.
ingest_load() {
    local s=$1 batch rc
    while read -r batch rc; do
        ingest "$WORK/out/s$s-b$batch" "$WORK/in/s$s-b$batch"
    done <"$WORK/load-$s.rc"
}

# The longest gap between consecutive per-file lines of a one-connection
# load's batches, in milliseconds, and the file it was for: how long one
# upload took, retries and waits included. The first line of each batch is
# left out, since its gap includes the client's start.
longest_wait() {
    local s=$1 batch rc
    while read -r batch rc; do
        awk 'NR > 1 { gap = $1 - prev; if (gap > max) { max = gap; file = $2 } } { prev = $1 }
            END { if (NR > 1) { sub(/^\{"path":"\/in\//, "", file); sub(/".*/, "", file); printf "%d %s\n", max * 1000, file } }' \
            "$WORK/out/s$s-b$batch"
    done <"$WORK/load-$s.rc" | sort -n | tail -n 1
}

# snapshot DIR: copies the volume out through a container of the image that
# is created, never started, and removed with its anonymous volumes.
snapshot() {
    local dir=$1 reader="$STACK-reader"
    $DOCKER create --name "$reader" --label "$LABEL" -v "$VOLUME:/data:ro" "$IMAGE" >/dev/null
    rm -rf "$dir"
    mkdir -p "$dir"
    $DOCKER cp "$reader:/data" - | tar -xf - -C "$dir" --no-same-owner
    $DOCKER rm -v "$reader" >/dev/null
}

# verify DIR: every acknowledged upload of the ledger is in the snapshot DIR
# with the bytes that were sent, and the class folders hold nothing else.
# Sets LOST to the number missing or different.
verify() {
    local dir=$1/data found
    [ -d "$dir" ] || fail "no data folder in the snapshot"
    (cd "$dir" && find red green blue not_trusted -type f -exec sha256sum {} +) |
        awk '{ print $2, $1 }' | sort >"$WORK/found"
    sort -u "$LEDGER" >"$WORK/acked"
    LOST=$(join -v 1 "$WORK/acked" "$WORK/found" | wc -l)
    LOST=$((LOST + $(join "$WORK/acked" "$WORK/found" | awk '$2 != $3' | wc -l)))
    if [ "$LOST" != 0 ]; then
        join -v 1 "$WORK/acked" "$WORK/found" | head -n 5 | sed 's/^/    missing: /' >&2
        join "$WORK/acked" "$WORK/found" | awk '$2 != $3' | head -n 5 | sed 's/^/    differs: /' >&2
    fi
    found=$(join -v 2 "$WORK/acked" "$WORK/found" | wc -l)
    [ "$found" = 0 ] || {
        join -v 2 "$WORK/acked" "$WORK/found" | head -n 5 | sed 's/^/    unacknowledged: /' >&2
        fail "the class folders hold $found files no send acknowledged"
    }
    [ "$(cut -d' ' -f1 "$WORK/acked" | uniq -d | wc -l)" = 0 ] ||
        fail "one stored name was acknowledged for different content"
}

# --- 1. Image and swarm ----------------------------------------------------

case $ENDPOINT_MODE in vip | dnsrr) ;; *) fail "COLORSORT_ENDPOINT_MODE must be vip or dnsrr, not $ENDPOINT_MODE" ;; esac
log "1. building the image $IMAGE"
if ! make -C "$ROOT" --no-print-directory docker-build DOCKER_TAGS="$IMAGE" >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log" >&2
    fail "make docker-build failed"
fi
note "$(grep '^static binary:' "$WORK/build.log")"

state=$($DOCKER info -f '{{.Swarm.LocalNodeState}}')
case $state in
    inactive)
        $DOCKER swarm init --advertise-addr 127.0.0.1 >/dev/null
        SWARM_CREATED=1
        note "no swarm was active: made this node a single-node swarm (left at the end)"
        ;;
    active) note "using the active swarm" ;;
    *) fail "this node's swarm state is '$state'" ;;
esac
[ "$($DOCKER info -f '{{.Swarm.ControlAvailable}}')" = true ] || skip "this node is in a swarm, not as a manager"
nodes=$($DOCKER node ls -q | wc -l)
[ "$nodes" = 1 ] || skip "this node is in a swarm of $nodes nodes; the test runs on a single-node swarm"
if $DOCKER stack ls --format '{{.Name}}' | grep -qxF "$STACK"; then
    STACK_DEPLOYED=0
    fail "a stack named $STACK exists already; it is not this test's to remove"
fi
$DOCKER volume inspect "$VOLUME" >/dev/null 2>&1 && fail "a volume named $VOLUME exists already"

# --- 2. Deploy ---------------------------------------------------------------

log "2. deploying stack $STACK ($REPLICAS replicas, endpoint mode $ENDPOINT_MODE)"
STACK_DEPLOYED=1
t0=$(now_ms)
COLORSORT_IMAGE=$IMAGE COLORSORT_REPLICAS=$REPLICAS COLORSORT_ENDPOINT_MODE=$ENDPOINT_MODE \
    $DOCKER stack deploy --resolve-image never -c deploy/swarm.yaml "$STACK" >"$WORK/deploy.log" 2>&1 ||
    { cat "$WORK/deploy.log" >&2; fail "docker stack deploy failed"; }
wait_until "$HEALTHY_WAIT" "$REPLICAS healthy replicas" converged "$REPLICAS"
DEPLOY_MS=$(($(now_ms) - t0))
note "$REPLICAS/$REPLICAS healthy after $DEPLOY_MS ms; the engine said: $(grep -i 'ignor' "$WORK/deploy.log" || echo nothing ignored)"
mode=$($DOCKER service inspect -f '{{.Spec.EndpointSpec.Mode}}' "$SERVICE")
[ "$mode" = "$ENDPOINT_MODE" ] || fail "the service's endpoint mode is $mode"
[ "$($DOCKER network inspect -f '{{.Driver}} {{.Attachable}}' "$NET")" = "overlay true" ] ||
    fail "$NET is not an attachable overlay network"

# --- 3. Hardening ------------------------------------------------------------

log "3. every replica runs as uid $SERVICE_UID, read-only, without capabilities, within its memory limit"
nnp=""
for c in $(tasks healthy); do
    hc=$($DOCKER inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.Memory}}' "$c")
    [ "$hc" = "$SERVICE_UID:$SERVICE_UID true [ALL] $MEMORY_LIMIT" ] || fail "task container settings: $hc"
    pid=$($DOCKER inspect -f '{{.State.Pid}}' "$c")
    if [ -r "/proc/$pid/status" ]; then
        status=$(grep -E '^(Uid|CapEff|CapBnd):' "/proc/$pid/status" | tr -s '\t' ' ' | tr '\n' ' ')
        [ "$status" = "Uid: $SERVICE_UID $SERVICE_UID $SERVICE_UID $SERVICE_UID CapEff: 0000000000000000 CapBnd: 0000000000000000 " ] ||
            fail "/proc/$pid/status: $status"
        nnp+=" $(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$pid/status")"
    fi
done
note "docker inspect: user $SERVICE_UID:$SERVICE_UID, read-only root, CapDrop [ALL], memory limit $MEMORY_LIMIT bytes"
if [ -n "$nnp" ]; then
    note "/proc: uid $SERVICE_UID, no effective or bounding capabilities; NoNewPrivs:$nnp" \
        "(this engine does not apply no-new-privileges to services: deploy/README.md)"
fi

# --- 4. One key --------------------------------------------------------------

log "4. one key on the volume, served by every replica"
snapshot "$WORK/snap0"
keys=$(cd "$WORK/snap0/data" && ls key.*)
[ "$keys" = "key.pem"$'\n'"key.pub" ] || fail "the volume holds these key files: $keys"
KEY=$(cat "$WORK/snap0/data/key.pub")
[[ $KEY == "ssh-rsa "* ]] || fail "key.pub: $KEY"
generated=0
IPS=()
for c in $(tasks healthy); do
    [ "$($DOCKER exec "$c" /colorsort key)" = "$KEY" ] || fail "$c serves another key"
    n=$($DOCKER logs "$c" 2>&1 | grep -c 'generated a' || true)
    generated=$((generated + n))
    IPS+=("$(task_ip "$c")")
done
[ "$generated" = 1 ] || fail "$generated replicas report generating a key"
FP=$($DOCKER exec "$(tasks healthy | head -n 1)" /colorsort key --fingerprint)
note "docker exec TASK /colorsort key: the same key from all $REPLICAS tasks, key.pub on the volume; one replica generated it ($FP)"
for ip in "${IPS[@]}"; do
    [ "$(client "" key --host "$ip:6666")" = "$KEY" ] || fail "the task at $ip serves another key"
done
note "colorsort key from a client container on $NET, at each task's address (${IPS[*]}): the same key"
printf '%s\n' "${IPS[@]}" | sort >"$WORK/ips"
if [ "$(id -u)" = 0 ] && command -v nsenter >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
    first=$(tasks healthy | head -n 1)
    resolve "$first" tasks.colorsort | sort >"$WORK/resolved"
    diff -u "$WORK/ips" "$WORK/resolved" >&2 || fail "tasks.colorsort does not resolve to the tasks' addresses"
    if [ "$ENDPOINT_MODE" = dnsrr ]; then
        resolve "$first" colorsort | sort >"$WORK/resolved"
        diff -u "$WORK/ips" "$WORK/resolved" >&2 || fail "colorsort does not resolve to the tasks' addresses"
    fi
    note "on $NET, tasks.colorsort$([ "$ENDPOINT_MODE" = dnsrr ] && echo ' and colorsort') resolve to exactly those $REPLICAS addresses"
elif [ -n "${COLORSORT_REQUIRE_TOOLS:-}" ]; then
    fail "the DNS check needs root, nsenter and python3 (COLORSORT_REQUIRE_TOOLS is set)"
else
    log "4. SKIPPED: tasks.colorsort DNS check (needs root, nsenter and python3)"
fi

# --- 5. Bulk send --------------------------------------------------------------

LEDGER=$WORK/ledger
: >"$LEDGER"
DUPS=0 RETRIED=0 MOST_ATTEMPTS=0
LOAD_PIDS=()
mkdir -p "$WORK/in" "$WORK/out"
BULK=300
log "5. colorsort send of $BULK images from a client container, through the service name"
make_batch "$WORK/in/s0-b0" 0 0 "$BULK"
t0=$(now_ms)
send_batch "$WORK/in/s0-b0" 4 "$WORK/out/s0-b0" ||
    { cat "$WORK/out/s0-b0" "$WORK/out/s0-b0.err" >&2; fail "colorsort send failed"; }
BULK_MS=$(($(now_ms) - t0))
INGESTED=0
ingest "$WORK/out/s0-b0" "$WORK/in/s0-b0"
ACK_BULK=$INGESTED
[ "$ACK_BULK" = "$BULK" ] || fail "colorsort send acknowledged $ACK_BULK of $BULK"
peers=$(for c in $(tasks healthy); do $DOCKER logs "$c" 2>&1 | grep -c 'SEAL s0-b0-' || true; done | tr '\n' ' ')
note "$ACK_BULK stored in $BULK_MS ms ($((BULK * 1000 / BULK_MS)) per second, client start included); uploads per replica: $peers"
note "$(tail -n 1 "$WORK/out/s0-b0.err")"
# Batches for the loads below: about 10 s of sending each at this rate.
BATCH=$((BULK * 10000 / BULK_MS))
[ "$BATCH" -ge 100 ] || BATCH=100
[ "$BATCH" -le 4000 ] || BATCH=4000

# --- 6. Rolling restart --------------------------------------------------------

log "6. docker service update --force (every replica replaced, one at a time) while sends run"
old=$(tasks | sort)
start_load 1 4 "$BATCH"
start_load 2 1 25
# Sends under way before the update starts: the first per-file lines.
wait_until 60 "the sends started" test -s "$WORK/out/s1-b0"
wait_until 60 "the sends started" test -s "$WORK/out/s2-b0"
t0=$(now_ms)
$DOCKER service update --force --detach=false "$SERVICE" >"$WORK/update.log" 2>&1 ||
    { cat "$WORK/update.log" >&2; fail "docker service update --force failed"; }
wait_until "$HEALTHY_WAIT" "$REPLICAS healthy replicas after the update" converged "$REPLICAS"
UPDATE_MS=$(($(now_ms) - t0))
stop_load 1 2
state=$($DOCKER service inspect -f '{{.UpdateStatus.State}}' "$SERVICE")
[ "$state" = completed ] || fail "the update ended as '$state'"
new=$(tasks | sort)
[ -z "$(comm -12 <(echo "$old") <(echo "$new"))" ] || fail "a task survived the forced update"
INGESTED=0
ingest_load 1
ingest_load 2
ACK_UPDATE=$INGESTED
read -r WAIT_MS WAIT_FILE < <(longest_wait 2)
note "update completed in $UPDATE_MS ms, all $REPLICAS tasks new; $BATCHES sends exited 0," \
    "$ACK_UPDATE uploads acknowledged; longest single upload on one connection: $WAIT_MS ms"
for c in $new; do
    [ "$($DOCKER exec "$c" /colorsort key)" = "$KEY" ] || fail "a new task serves another key"
done

# --- 7. Kill -------------------------------------------------------------------

log "7. docker kill of one task's container: the task is replaced"
victim=$(tasks healthy | head -n 1)
victim_task=$($DOCKER inspect -f '{{index .Config.Labels "com.docker.swarm.task.id"}}' "$victim")
t0=$(now_ms)
$DOCKER kill "$victim" >/dev/null
replaced() {
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$victim")" = false ] &&
        ! grep -qx "$victim" <<<"$(tasks)" && converged "$REPLICAS"
}
wait_until "$HEALTHY_WAIT" "the killed task replaced" replaced
KILL_MS=$(($(now_ms) - t0))
err=$($DOCKER inspect --type task -f '{{.Status.State}}: {{.Status.Err}}' "$victim_task")
note "replaced and $REPLICAS/$REPLICAS healthy after $KILL_MS ms; the killed task: $err"

# --- 8. Scale ------------------------------------------------------------------

log "8. docker service scale to 5, then to 2, while sends run"
# Shorter sends over more connections, so that each new task soon gets
# some: a send's connections go to addresses in the order DNS gives them,
# which is shuffled.
start_load 3 8 $((BATCH / 2 > 100 ? BATCH / 2 : 100))
wait_until 60 "the sends started" test -s "$WORK/out/s3-b0"
t0=$(now_ms)
$DOCKER service scale --detach=false "$SERVICE=5" >"$WORK/scale5.log" 2>&1 ||
    { cat "$WORK/scale5.log" >&2; fail "docker service scale to 5 failed"; }
wait_until "$HEALTHY_WAIT" "5 healthy replicas" converged 5
SCALE5_MS=$(($(now_ms) - t0))
# Every one of the five is sent to before scaling down.
for c in $(tasks healthy); do
    wait_until 120 "uploads reaching $c" logged "$c" 'SEAL s3-'
done
t0=$(now_ms)
$DOCKER service scale --detach=false "$SERVICE=2" >"$WORK/scale2.log" 2>&1 ||
    { cat "$WORK/scale2.log" >&2; fail "docker service scale to 2 failed"; }
wait_until "$HEALTHY_WAIT" "2 healthy replicas" converged 2
SCALE2_MS=$(($(now_ms) - t0))
stop_load 3
INGESTED=0
ingest_load 3
ACK_SCALE=$INGESTED
note "5/5 healthy after $SCALE5_MS ms, 2/2 after $SCALE2_MS ms; $BATCHES sends exited 0, $ACK_SCALE uploads acknowledged"

# --- 9. The volume ---------------------------------------------------------------

log "9. every acknowledged upload on the volume, byte for byte"
snapshot "$WORK/snap1"
verify "$WORK/snap1"
ACKED=$(wc -l <"$LEDGER")
STORED=$(wc -l <"$WORK/found")
[ "$(cat "$WORK/snap1/data/key.pub")" = "$KEY" ] || fail "the key on the volume changed"
stats=$($DOCKER exec "$(tasks healthy | head -n 1)" /colorsort stats)
note "$STORED files in the class folders, each one acknowledged; lost: $LOST; STATS: $(echo "$stats" | tr '\n' ' ')"

# --- Summary -----------------------------------------------------------------

echo
echo "uploads:  $ACKED acknowledged ($ACK_BULK bulk, $ACK_UPDATE during the rolling restart, $ACK_SCALE during scaling)," \
    "lost $LOST, $RETRIED needed a retry (at most $MOST_ATTEMPTS attempts), $DUPS answered as duplicates"
echo "waits:    longest single upload during the restart ${WAIT_MS} ms ($WAIT_FILE)"
echo "swarm:    deploy to $REPLICAS healthy ${DEPLOY_MS} ms, forced update ${UPDATE_MS} ms, killed task replaced ${KILL_MS} ms," \
    "scale to 5 ${SCALE5_MS} ms, to 2 ${SCALE2_MS} ms"
[ "$LOST" = 0 ] || fail "$LOST acknowledged uploads are missing from the volume or differ"
echo "swarm test passed in $(($(date +%s) - STARTED))s"

#!/usr/bin/env bash
# Test of colorsort replicas on GlusterFS, with faults, run by
# `make gluster-test`.
#
# It starts its own glusterd (no systemd: by hand, with a working directory
# of its own), makes a replica-3 volume of three local bricks with the
# options docs/OPERATIONS.md gives, and mounts it twice with the FUSE
# client, as two hosts would. It checks that the mounts agree at once
# (hard links, O_EXCL, flock, renames, unlinks, mode changes), then runs two
# servers from the image, one on each mount with its data folder bound as
# /data, the way each Swarm node would run them, and sends to both at once
# with `colorsort send` (sealed, same names with different content) and
# with plain PUTs over raw TCP, while, one after the other:
#
#   1. one brick is killed, then restarted and healed;
#   2. one brick is frozen (SIGSTOP) for 20 s;
#   3. two of the three bricks are killed for a few seconds: quorum is lost,
#      uploads must get `ERR storage-failed` at once, and the servers must
#      take uploads again when the bricks are back, without a restart;
#   4. one server is killed with SIGKILL and started again.
#
# After each fault the self-heal daemon is timed until nothing is left to
# heal; a file a killed brick kept without a gfid, which the daemon cannot
# remove, is removed by hand as docs/OPERATIONS.md says, and named in the
# summary. Afterwards every acknowledged upload must be readable and
# byte-identical from both mounts, no stored name acknowledged for two
# contents, duplicates sent to either server recognised, each running
# server's staging folder present (another server's start may have swept
# it, GlusterFS having dropped its lock) and holding no staging file, and
# each upload acknowledged as stored but not indexed (quorum lost between
# the two) recognised as a duplicate once it is sent again.
# Last, the Swarm stack (deploy/swarm.yaml, endpoint dnsrr) runs on a
# single-node swarm with its data volume bound to the gluster mount, as
# deploy/README.md describes, and takes a send whose files must appear on
# both mounts. It prints, per fault: uploads acknowledged, refused and
# retried, the slowest raw reply, and the time to recover; then how many
# were lost (the test fails unless none); and the setup time.
#
# Needs root, /dev/fuse, GlusterFS (Debian's glusterfs-server and
# glusterfs-client, and getfattr, from attr, which they depend on), a
# Docker engine, bash, sha256sum and flock; SKIPPED
# without them, a failure instead when COLORSORT_REQUIRE_TOOLS is set. A
# glusterd already running on this machine is never touched: the test is
# then SKIPPED too, as it needs glusterd's port.
#
# Isolation and cleanup: everything lives in a fresh folder under TMPDIR
# (glusterd's state, the bricks, the mount points, the logs), but for what
# glusterd puts in /var/log/glusterfs whatever its options: the bricks'
# logs and two empty folders named after the volume, removed at the end,
# and lines appended to glustershd.log and cmd_history.log there. The volume,
# containers, stack (colorsort-gluster-PID), its volume and the image tag
# carry this run's name. On exit, pass or fail, the containers and the stack
# go, the mounts are unmounted, and every gluster process this run started
# (found from the pid files it told them to write, and checked to be this
# run's by its command line) is stopped, killed if it lingers; each step is
# bounded in time.
set -eEuo pipefail
shopt -s inherit_errexit
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
TEST_NAME="gluster test"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
DOCKER=${DOCKER:-docker}
RUN="$$-$(date +%s)"
LABEL="colorsort.test=$RUN"
IMAGE="colorsort:test-$RUN"
PREFIX="colorsort-gluster-$$"
STACK=$PREFIX
VOLUME_NAME="cs$$"
SERVICE_UID=10001
HARDENING=(--read-only --cap-drop ALL --security-opt no-new-privileges)
# The client on the host is the very binary the image holds.
CS=$ROOT/target/docker-root/colorsort
GLUSTERD_PORT=24007

# The volume options of docs/OPERATIONS.md (see there for why each).
PING_TIMEOUT=5
VOLUME_OPTIONS=(
    performance.stat-prefetch=off
    performance.quick-read=off
    performance.open-behind=off
    performance.write-behind=off
    performance.io-cache=off
    performance.read-ahead=off
    performance.readdir-ahead=off
    performance.nl-cache=off
    performance.parallel-readdir=off
    cluster.quorum-type=auto
    "network.ping-timeout=$PING_TIMEOUT"
    cluster.self-heal-daemon=on
    cluster.granular-entry-heal=off
)
# And the FUSE client's: no kernel caching of names or attributes.
MOUNT_OPTIONS=(--attribute-timeout=0 --entry-timeout=0 --negative-timeout=0)

# Faults.
BRICK_DOWN=4
FREEZE=20
QUORUM_DOWN=4
# Deadlines, in seconds.
GLUSTER_WAIT=60
HEAL_WAIT=90
HEAL_KICK=10
HEALTHY_WAIT=60
# Longest a raw upload may take for its reply during any fault: the frozen
# brick costs up to the ping timeout, plus the server's own work.
MAX_REPLY=$((PING_TIMEOUT + 10))
# Images per `colorsort send` batch, and its connections.
BATCH=6
JOBS=2

secs() { printf '%d.%01d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# --- Can it run here? ------------------------------------------------------

[ "$(id -u)" = 0 ] || skip "needs root, for glusterd and FUSE mounts"
[ -c /dev/fuse ] || skip "no /dev/fuse"
for tool in glusterd gluster glusterfs getfattr flock sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (glusterfs-server, glusterfs-client)"
done
$DOCKER info >/dev/null 2>&1 || skip "no Docker engine reachable"
# The bricks' host: glusterd refuses localhost, and needs a name that
# resolves to this machine.
getent hosts "$(hostname)" >/dev/null || skip "the host name $(hostname) does not resolve"
if (exec 3<>"/dev/tcp/127.0.0.1/$GLUSTERD_PORT") 2>/dev/null; then
    skip "port $GLUSTERD_PORT is taken: a glusterd runs already, and is left alone"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/colorsort-gluster-test.XXXXXX")
export XDG_CONFIG_HOME=$WORK/config
GD=$WORK/glusterd
M1=$WORK/mnt1
M2=$WORK/mnt2
BRICKS=("$WORK/brick1/b" "$WORK/brick2/b" "$WORK/brick3/b")
# The self-heal daemons' log, and its length before this run.
SHD_LOG=/var/log/glusterfs/glustershd.log
SHD_LOG_START=$(stat -c %s "$SHD_LOG" 2>/dev/null || echo 0)
BG_PIDS=()
LOAD_PIDS=()
STARTED=$(date +%s)
SWARM_CREATED=0
STACK_DEPLOYED=0
S1=$PREFIX-1
S2=$PREFIX-2

# The pids this run's gluster processes wrote, each still alive and still
# one of them: its command line names this run's folder or volume.
gluster_pids() {
    local f pid
    for f in "$GD/glusterd.pid" "$WORK/mnt1.pid" "$WORK/mnt2.pid" $(find "$GD/run" -name '*.pid' 2>/dev/null); do
        [ -r "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        [[ $pid =~ ^[0-9]+$ ]] || continue
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE -- "$WORK|$VOLUME_NAME"; then
            echo "$pid"
        fi
    done | sort -u
}

cleanup() {
    local rc=$? pid c i pids sockets m
    trap - EXIT INT TERM ERR
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for c in $($DOCKER ps -aq --filter "label=$LABEL" 2>/dev/null || true); do
        if [ "$rc" -ne 0 ]; then
            printf -- '--- last log lines of %s\n' "$($DOCKER inspect -f '{{.Name}}' "$c" 2>/dev/null)" >&2
            $DOCKER logs --tail 15 "$c" 2>&1 | sed 's/^/    /' >&2 || true
        fi
        timeout 30 "$DOCKER" rm -f -v "$c" >/dev/null 2>&1 || true
    done
    if [ "$STACK_DEPLOYED" = 1 ]; then
        timeout 30 "$DOCKER" stack rm "$STACK" >/dev/null 2>&1 || true
        for i in $(seq 120); do
            [ -n "$($DOCKER ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] ||
                [ -n "$($DOCKER network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ] || break
            sleep 0.5
        done
    fi
    $DOCKER volume rm "${STACK}_data" >/dev/null 2>&1 || true
    $DOCKER rmi "$IMAGE" >/dev/null 2>&1 || true
    if [ "$SWARM_CREATED" = 1 ]; then
        if [ -z "$($DOCKER service ls -q 2>/dev/null)" ]; then
            $DOCKER swarm leave --force >/dev/null 2>&1 || echo "could not leave the swarm this test created" >&2
            $DOCKER network rm docker_gwbridge >/dev/null 2>&1 || true
        else
            echo "other services run on the swarm this test created: staying in it" >&2
        fi
    fi
    # The mounts first, so that nothing holds the bricks.
    for m in "$M1" "$M2"; do
        if mountpoint -q "$m" 2>/dev/null; then
            timeout 20 umount "$m" 2>/dev/null || timeout 20 umount -l "$m" 2>/dev/null ||
                echo "could not unmount $m" >&2
        fi
    done
    pids=$(gluster_pids)
    # Their sockets in /var/run/gluster, named on their command lines.
    sockets=$(for pid in $pids; do
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -A1 -x -- '-S' | grep '\.socket$' || true
    done)
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086 # a list of pids
        kill -CONT $pids 2>/dev/null || true
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for i in $(seq 40); do
            [ -n "$(gluster_pids)" ] || break
            sleep 0.25
        done
        pids=$(gluster_pids)
        # shellcheck disable=SC2086
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    fi
    for m in "$M1" "$M2"; do
        if mountpoint -q "$m" 2>/dev/null; then
            timeout 20 umount -l "$m" 2>/dev/null || echo "could not unmount $m" >&2
        fi
    done
    for c in $sockets; do rm -f "$c"; done
    # What glusterd keeps of this run in its log folder: the bricks' logs
    # and two folders named after the volume.
    for c in "${BRICKS[@]}"; do
        c=${c#/}
        rm -f "/var/log/glusterfs/bricks/${c//\//-}.log"
    done
    rmdir "/var/log/glusterfs/snaps/$VOLUME_NAME" "/var/log/glusterfs/gfproxy/$VOLUME_NAME" 2>/dev/null || true
    if mountpoint -q "$M1" 2>/dev/null || mountpoint -q "$M2" 2>/dev/null; then
        echo "a mount is left under $WORK: not removing it" >&2
    else
        rm -rf "$WORK"
    fi
    if [ "$rc" -ne 0 ]; then
        echo "gluster test FAILED after $(($(date +%s) - STARTED))s (cleaned up what run $RUN made)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "FAIL: unexpected error at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Functions -------------------------------------------------------------


# gl ARGS...: the gluster CLI, talking to this run's glusterd, bounded.
gl() {
    timeout "$GLUSTER_WAIT" gluster --mode=script --glusterd-sock="$GD/glusterd.socket" \
        --log-file="$GD/log/cli.log" "$@"
}

# The pid of brick N (1 to 3), from the pid file glusterd gave it.
brick_pid() {
    local b=${BRICKS[$1 - 1]} f
    f="$GD/run/vols/$VOLUME_NAME/$(hostname)${b//\//-}.pid"
    cat "$f"
}

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
gone() { ! alive "$1"; }

# Whether every brick is online, as glusterd sees it.
bricks_online() {
    local status
    status=$(gl volume status "$VOLUME_NAME" --xml 2>/dev/null) || return 1
    [ "$(tr -d '\n' <<<"$status" | sed 's/<node>/\n/g' | grep "<path>$WORK/" | grep -c '<status>1</status>')" = 3 ]
}

# Entries waiting to be healed, summed over the bricks.
heal_pending() {
    local out
    out=$(gl volume heal "$VOLUME_NAME" statistics heal-count 2>/dev/null) || { echo unknown; return; }
    awk '/^Number of entries:/ { n += $4; seen++ } END { if (seen == 3) print n; else print "unknown" }' <<<"$out"
}
healed() { [ "$(heal_pending)" = 0 ]; }

# restart_bricks: has glusterd start the bricks that are down, and waits
# for them to be online. (glusterd may not have noticed yet that a killed
# brick is gone, and then starts nothing: it is asked again.)
restart_bricks() {
    local deadline i
    deadline=$(($(now_ms) + GLUSTER_WAIT * 1000))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        gl volume start "$VOLUME_NAME" force >/dev/null
        for i in $(seq 12); do
            bricks_online && return 0
            sleep 0.25
        done
    done
    fail "bricks not online ${GLUSTER_WAIT}s after volume start force"
}

# mount_volume DIR: mounts the volume at DIR with the FUSE client, as
# `mount -t glusterfs -o attribute-timeout=0,entry-timeout=0,negative-timeout=0`
# does, with a pid file of its own.
mount_volume() {
    local dir=$1
    mkdir -p "$dir"
    glusterfs --process-name fuse --volfile-server="$(hostname)" --volfile-id="$VOLUME_NAME" \
        "${MOUNT_OPTIONS[@]}" --pid-file="$dir.pid" --log-file="$GD/log/$(basename "$dir").log" "$dir"
    wait_until "$GLUSTER_WAIT" "$dir mounted" mountpoint -q "$dir"
    wait_until "$GLUSTER_WAIT" "$dir readable" stat "$dir/." >/dev/null
}

# bmp N FILE: a 1x1 BMP whose pixel spells the number N (below 2^24).
bmp() {
    local n=$1 pixel
    printf -v pixel '\\x%02x\\x%02x\\x%02x\\x00' $(((n >> 16) & 255)) $(((n >> 8) & 255)) $((n & 255))
    printf '%b' "$BMP_HEAD$pixel" >"$2"
}

# make_batch DIR SOURCE BATCH PREFIX: BATCH images named PREFIX-I.bmp in
# DIR, of colours no other source (0 to 63) or batch (0 to 1023) has, and
# DIR.sums with their SHA-256s.
make_batch() {
    local dir=$1 source=$2 batch=$3 prefix=$4 i
    mkdir -p "$dir"
    for ((i = 0; i < BATCH; i++)); do
        bmp $(((source << 18) + (batch << 8) + i)) "$dir/$prefix-$i.bmp"
    done
    (cd "$dir" && sha256sum -- *.bmp) >"$dir.sums"
}

host_port() {
    local out
    out=$($DOCKER port "$1" 6666/tcp)
    out=${out%%$'\n'*}
    echo "${out##*:}"
}

run_server() {
    local name=$1 mount=$2
    $DOCKER run -d --name "$name" --label "$LABEL" -p 127.0.0.1::6666 \
        -v "$mount/data:/data" "${HARDENING[@]}" --health-interval 1s "$IMAGE" >/dev/null
}

healthy() { [ "$($DOCKER inspect -f '{{.State.Health.Status}}' "$1")" = healthy ]; }

wait_healthy() {
    local name=$1 deadline
    deadline=$(($(now_ms) + HEALTHY_WAIT * 1000))
    until healthy "$name"; do
        [ "$($DOCKER inspect -f '{{.State.Running}}' "$name")" = true ] || fail "$name stopped before it was healthy"
        [ "$(now_ms)" -lt "$deadline" ] || fail "$name not healthy after ${HEALTHY_WAIT}s"
        sleep 0.25
    done
}

logs() { $DOCKER logs "$1" 2>&1; }

# put PORT NAME FILE: sends FILE with PUT over raw TCP, prints the reply
# line (empty if none came within MAX_REPLY seconds, or the connection was
# refused).
put() {
    local port=$1 fd reply="" size
    size=$(wc -c <"$3")
    exec {fd}<>"/dev/tcp/127.0.0.1/$port"
    printf 'PUT %s %d\n' "$2" $((size)) >&"$fd"
    cat "$3" >&"$fd"
    IFS= read -r -t "$MAX_REPLY" reply <&"$fd" || true
    exec {fd}>&-
    printf '%s\n' "${reply%$'\r'}"
}

# probe PHASE SOURCE STOP: PUTs a new image to each server in turn, four
# times a second, until the file STOP exists. Each try is a line of
# $WORK/probe-PHASE: `MS PORT ELAPSED_MS SHA REPLY`.
probe() {
    local phase=$1 source=$2 stop=$3 i=0 port t0 reply file
    mkdir -p "$WORK/probe/$phase"
    while [ ! -e "$stop" ]; do
        for port in "$(cat "$WORK/port-s1")" "$(cat "$WORK/port-s2")"; do
            file=$WORK/probe/$phase/$i.bmp
            bmp $(((source << 18) + i)) "$file"
            t0=$(now_ms)
            reply=$(put "$port" "probe-$phase-$i.bmp" "$file" 2>/dev/null) || reply=""
            echo "$t0 $port $(($(now_ms) - t0)) $(sha256sum <"$file" | cut -d' ' -f1) ${reply:-(none)}" >>"$WORK/probe-$phase"
            i=$((i + 1))
        done
        sleep 0.25
    done
}

# load PHASE SERVER SOURCE STOP: `colorsort send` of batches of new
# images to SERVER (s1 or s2, at the port in $WORK/port-SERVER, which a
# restart changes), one batch after the other, until the file
# STOP exists. Both servers' loads of a phase use the same names, so each
# name is sent to both with different content. Each batch's output is kept
# as $WORK/out/PHASE/SERVER-B, its exit code appended to
# $WORK/out/PHASE/SERVER.rc.
load() {
    local phase=$1 server=$2 source=$3 stop=$4 batch=0 rc dir
    mkdir -p "$WORK/out/$phase"
    while [ ! -e "$stop" ]; do
        dir=$WORK/in/$phase/$server-$batch
        make_batch "$dir" "$source" "$batch" "$phase-$batch"
        rc=0
        "$CS" send --json -j "$JOBS" --host "127.0.0.1:$(cat "$WORK/port-$server")" "$dir" \
            >"$WORK/out/$phase/$server-$batch" 2>"$WORK/out/$phase/$server-$batch.err" || rc=$?
        echo "$batch $rc" >>"$WORK/out/$phase/$server.rc"
        batch=$((batch + 1))
    done
}

# The number of batches a load has finished.
batches_done() { [ -f "$1" ] && wc -l <"$1" || echo 0; }

# ingest OUT DIR: records the uploads `colorsort send` reported in OUT, of
# the files in DIR: `STORED SHA` in the ledger for each one acknowledged,
# as stored or as a duplicate of STORED; `SHA` in $WORK/refused for each it
# gave up on. Adds to ACKED, REFUSED and RETRIED.
ingest() {
    local out=$1 dir=$2 json re path result stored attempts sum name
    local -A sums
    while read -r sum name; do sums[$name]=$sum; done <"$dir.sums"
    re='^\{"path":"[^"]*/([^"/]+)","result":"(stored|duplicate|failed)","stored":("([^"]*)"|null),.*"attempts":([0-9]+)\}$'
    while IFS= read -r json; do
        [[ $json =~ $re ]] || fail "unexpected line from colorsort send: $json"
        path=${BASH_REMATCH[1]} result=${BASH_REMATCH[2]} stored=${BASH_REMATCH[4]} attempts=${BASH_REMATCH[5]}
        [ -n "${sums[$path]:-}" ] || fail "colorsort send reports a file it was not given: $path"
        if [ "$result" = failed ]; then
            echo "${sums[$path]}" >>"$WORK/refused"
            REFUSED=$((REFUSED + 1))
        else
            echo "$stored ${sums[$path]}" >>"$LEDGER"
            [ "$result" = stored ] || echo "$stored ${sums[$path]}" >>"$LEDGER.dups"
            ACKED=$((ACKED + 1))
        fi
        [ "$attempts" = 1 ] || RETRIED=$((RETRIED + 1))
        unset "sums[$path]"
    done <"$out"
    [ "${#sums[@]}" = 0 ] && return
    # A send that could not reach the server at all reports no file.
    grep -q '^colorsort: cannot connect' "$out.err" ||
        { cat "$out.err" >&2; fail "colorsort send did not report ${#sums[@]} of the files in $dir"; }
    for name in "${!sums[@]}"; do
        echo "${sums[$name]}" >>"$WORK/refused"
        REFUSED=$((REFUSED + 1))
    done
}

# ingest_probe PHASE: records the probe's uploads of a phase like ingest,
# and sets PROBE_OK, PROBE_FAILED (ERR storage-failed), PROBE_OTHER (any
# other reply, or none) and PROBE_SLOWEST (ms).
ingest_probe() {
    local phase=$1 t port ms sum reply re='^OK ([a-z_]+/[^ ]+) r='
    PROBE_OK=0 PROBE_FAILED=0 PROBE_OTHER=0 PROBE_SLOWEST=0
    [ -f "$WORK/probe-$phase" ] || return 0
    while read -r t port ms sum reply; do
        [ "$ms" -le "$PROBE_SLOWEST" ] || PROBE_SLOWEST=$ms
        if [[ $reply =~ $re ]]; then
            echo "${BASH_REMATCH[1]} $sum" >>"$LEDGER"
            PROBE_OK=$((PROBE_OK + 1))
        else
            echo "$sum" >>"$WORK/refused"
            case $reply in
                "ERR storage-failed"*) PROBE_FAILED=$((PROBE_FAILED + 1)) ;;
                *) PROBE_OTHER=$((PROBE_OTHER + 1)) ;;
            esac
        fi
    done <"$WORK/probe-$phase"
}

# start_phase PHASE: starts both servers' loads and the probe, and waits
# until both loads have had a batch acknowledged.
start_phase() {
    local phase=$1
    PHASE=$phase
    PHASE_SOURCE=$((PHASE_SOURCE + 3))
    rm -f "$WORK/stop-$phase"
    load "$phase" s1 "$PHASE_SOURCE" "$WORK/stop-$phase" &
    LOAD_PIDS+=("$!")
    load "$phase" s2 $((PHASE_SOURCE + 1)) "$WORK/stop-$phase" &
    LOAD_PIDS+=("$!")
    probe "$phase" $((PHASE_SOURCE + 2)) "$WORK/stop-$phase" &
    LOAD_PIDS+=("$!")
    BG_PIDS+=("${LOAD_PIDS[@]}")
    wait_until 60 "a first batch to each server" both_loads_past 0 0
}

# both_loads_past N1 N2: whether the loads have finished more than N1 and
# N2 batches.
both_loads_past() {
    [ "$(batches_done "$WORK/out/$PHASE/s1.rc")" -gt "$1" ] &&
        [ "$(batches_done "$WORK/out/$PHASE/s2.rc")" -gt "$2" ]
}

# end_phase [cut-off]: lets each load finish two more batches (all after the fault
# is over), stops them, and ingests what they and the probe got. Sets the
# phase's counts. A raw upload with no reply fails the phase, unless
# `cut-off` says a server was killed.
end_phase() {
    local phase=$PHASE s batch rc pid n1 n2 none
    n1=$(batches_done "$WORK/out/$phase/s1.rc")
    n2=$(batches_done "$WORK/out/$phase/s2.rc")
    wait_until 120 "two more batches to each server after the fault" both_loads_past $((n1 + 1)) $((n2 + 1))
    touch "$WORK/stop-$phase"
    for pid in "${LOAD_PIDS[@]}"; do
        wait "$pid" || fail "a load of phase $phase failed"
    done
    LOAD_PIDS=()
    BG_PIDS=()
    ACKED=0 REFUSED=0 RETRIED=0
    for s in s1 s2; do
        while read -r batch rc; do
            case $rc in 0 | 1) ;; *)
                cat "$WORK/out/$phase/$s-$batch.err" >&2
                fail "colorsort send exited $rc in phase $phase" ;;
            esac
            ingest "$WORK/out/$phase/$s-$batch" "$WORK/in/$phase/$s-$batch"
        done <"$WORK/out/$phase/$s.rc"
    done
    # The fault is over: each server's last batch is stored whole.
    for s in s1 s2; do
        read -r batch rc < <(tail -n 1 "$WORK/out/$phase/$s.rc")
        [ "$rc" = 0 ] || {
            cat "$WORK/out/$phase/$s-$batch" "$WORK/out/$phase/$s-$batch.err" >&2
            fail "phase $phase: server $s still fails uploads after the fault"
        }
    done
    ingest_probe "$phase"
    none=$(grep -c ' (none)$' "$WORK/probe-$phase" || true)
    [ "${1:-}" != cut-off ] || PROBE_OTHER=$((PROBE_OTHER - none))
    [ "$PROBE_OTHER" = 0 ] || {
        grep -v ' OK \| ERR storage-failed' "$WORK/probe-$phase" | head -n 5 >&2
        fail "phase $phase: $PROBE_OTHER raw uploads got neither OK nor ERR storage-failed"
    }
}

# phase_line WHAT RECOVERY: one line of the closing summary, and a note.
phase_line() {
    local line
    line=$(printf '%-26s acknowledged %4d (send %d, raw %d), refused %d (raw ERR storage-failed %d), retried %d, slowest raw reply %s s, recovery %s' \
        "$1" $((ACKED + PROBE_OK)) "$ACKED" "$PROBE_OK" $((REFUSED + PROBE_FAILED)) "$PROBE_FAILED" "$RETRIED" \
        "$(secs "$PROBE_SLOWEST")" "$2")
    SUMMARY+=("$line")
    note "$line"
}

# sums_of MOUNT: `PATH SHA` for every file in the class folders under
# MOUNT/data, sorted.
sums_of() {
    (cd "$1/data" && find red green blue not_trusted -type f -exec sha256sum {} +) |
        awk '{ print $2, $1 }' | sort
}

# verify: every acknowledged upload is on both mounts with the bytes sent,
# the mounts list the same files, and no stored name was acknowledged for
# two contents. Sets LOST, EXTRA (stored, never acknowledged) and COPIES
# (contents stored more than once).
verify() {
    local m path sum
    for m in 1 2; do
        sums_of "$WORK/mnt$m" >"$WORK/found$m"
    done
    diff -u "$WORK/found1" "$WORK/found2" >&2 || fail "the two mounts do not show the same files"
    sort -u "$LEDGER" >"$WORK/acked"
    [ "$(cut -d' ' -f1 "$WORK/acked" | uniq -d | wc -l)" = 0 ] || {
        cut -d' ' -f1 "$WORK/acked" | uniq -d | head -n 5 >&2
        fail "a stored name was acknowledged for two different contents: overwritten"
    }
    LOST=$(join -v 1 "$WORK/acked" "$WORK/found1" | wc -l)
    LOST=$((LOST + $(join "$WORK/acked" "$WORK/found1" | awk '$2 != $3' | wc -l)))
    if [ "$LOST" != 0 ]; then
        join -v 1 "$WORK/acked" "$WORK/found1" | head -n 5 | sed 's/^/    missing: /' >&2
        join "$WORK/acked" "$WORK/found1" | awk '$2 != $3' | head -n 5 | sed 's/^/    differs: /' >&2
        fail "$LOST acknowledged uploads are missing or differ"
    fi
    EXTRA=$(join -v 2 "$WORK/acked" "$WORK/found1" | wc -l)
    # Every extra file must be an upload that was refused or cut off.
    while read -r path sum; do
        grep -qx "$sum" "$WORK/refused" || fail "$path was stored, yet never sent or acknowledged"
    done < <(join -v 2 "$WORK/acked" "$WORK/found1")
    COPIES=$(cut -d' ' -f2 "$WORK/found1" | sort | uniq -d | wc -l)
}

# The staging files (anything but the instance lock) in the folders of the
# servers running now.
live_staging() {
    find "$M1/data/.staging" -mindepth 2 -maxdepth 2 ! -name lock -print
}

# --- 1. Image --------------------------------------------------------------

log "1. building the image $IMAGE"
if ! make -C "$ROOT" --no-print-directory docker-build DOCKER_TAGS="$IMAGE" >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log" >&2
    fail "make docker-build failed"
fi
note "$(grep '^static binary:' "$WORK/build.log")"

# --- 2. GlusterFS ----------------------------------------------------------

log "2. glusterd, a replica-3 volume on three local bricks, two FUSE mounts"
t0=$(now_ms)
mkdir -p "$GD/lib" "$GD/run" "$GD/log" "${BRICKS[@]%/b}"
# The volume options' groups, if the package put them there; no hooks.
[ ! -d /var/lib/glusterd/groups ] || cp -r /var/lib/glusterd/groups "$GD/lib/"
cat >"$GD/glusterd.vol" <<EOF
volume management
    type mgmt/glusterd
    option working-directory $GD/lib
    option run-directory $GD/run
    option glusterd-sockfile $GD/glusterd.socket
    option transport-type socket
    option transport.socket.listen-port $GLUSTERD_PORT
    option ping-timeout 0
    option event-threads 1
end-volume
EOF
glusterd -f "$GD/glusterd.vol" -p "$GD/glusterd.pid" -l "$GD/log/glusterd.log"
wait_until "$GLUSTER_WAIT" "glusterd answering" gl pool list >/dev/null
# glusterd refuses localhost as a brick host; `force` lets the bricks sit
# on the root filesystem.
bricks=()
for b in "${BRICKS[@]}"; do bricks+=("$(hostname):$b"); done
gl volume create "$VOLUME_NAME" replica 3 "${bricks[@]}" force >/dev/null
for o in "${VOLUME_OPTIONS[@]}"; do
    gl volume set "$VOLUME_NAME" "${o%%=*}" "${o#*=}" >/dev/null
done
gl volume start "$VOLUME_NAME" >/dev/null
wait_until "$GLUSTER_WAIT" "bricks online" bricks_online
mount_volume "$M1"
mount_volume "$M2"
SETUP_MS=$(($(now_ms) - t0))
note "volume $VOLUME_NAME: replica 3 on $(hostname), bricks pids $(brick_pid 1) $(brick_pid 2) $(brick_pid 3);" \
    "mounted at $M1 and $M2 in $(secs "$SETUP_MS") s"

# --- 3. The mounts agree ---------------------------------------------------

log "3. what one mount does, the other sees at once"
mkdir "$M1/probe"
echo one >"$M1/probe/a"
ln "$M1/probe/a" "$M1/probe/b"
[ "$(stat -c '%i %h' "$M2/probe/b")" = "$(stat -c '%i 2' "$M2/probe/a")" ] ||
    fail "a hard link made on one mount is not a second name of the file on the other"
! ln "$M2/probe/a" "$M2/probe/b" 2>/dev/null || fail "link(2) onto an existing name succeeded"
! (set -C && echo two >"$M2/probe/a") 2>/dev/null || fail "O_EXCL create of an existing file succeeded"
mv "$M1/probe/b" "$M1/probe/c"
[ ! -e "$M2/probe/b" ] || fail "the other mount still sees a renamed name"
[ "$(cat "$M2/probe/c")" = one ] || fail "the other mount misses a rename"
rm "$M1/probe/c"
[ ! -e "$M2/probe/c" ] || fail "the other mount misses an unlink"
chmod 600 "$M1/probe/a"
[ "$(stat -c %a "$M2/probe/a")" = 600 ] || fail "the other mount misses a chmod"
rm "$M1/probe/a"
echo three >"$M1/probe/a"
[ "$(cat "$M2/probe/a")" = three ] || fail "a reused name reads the old file on the other mount"
flock -x "$M1/probe/a" sleep 3 &
lock_pid=$!
BG_PIDS+=("$lock_pid")
wait_until 10 "the lock taken" bash -c "! flock -n -x '$M1/probe/a' true"
! flock -n -x "$M2/probe/a" true || fail "flock(2) on one mount does not exclude the other"
wait "$lock_pid"
BG_PIDS=()
rm -r "$M1/probe"
note "hard links, EEXIST, O_EXCL, renames, unlinks, chmod, a reused name and flock agree between the mounts"

# --- 4. Two servers --------------------------------------------------------

log "4. two servers, one on each mount"
mkdir "$M1/data"
chown "$SERVICE_UID:$SERVICE_UID" "$M1/data"
chmod 0700 "$M1/data"
# Started together, both may generate a key; the store must end with one.
run_server "$S1" "$M1" &
BG_PIDS+=("$!")
run_server "$S2" "$M2"
wait "${BG_PIDS[0]}" || fail "starting $S1 failed"
BG_PIDS=()
wait_healthy "$S1"
wait_healthy "$S2"
P1=$(host_port "$S1")
P2=$(host_port "$S2")
echo "$P1" >"$WORK/port-s1"
echo "$P2" >"$WORK/port-s2"
fp1=$("$CS" key --host "127.0.0.1:$P1" --fingerprint)
fp2=$("$CS" key --host "127.0.0.1:$P2" --fingerprint)
[ "$fp1" = "$fp2" ] || fail "the servers present different keys: $fp1, $fp2"
[ "$( (logs "$S1"; logs "$S2") | grep -c 'generated a' || true)" = 1 ] || fail "not exactly one server reports generating the key"
note "$S1 on port $P1, $S2 on port $P2, one key $fp1"

LEDGER=$WORK/ledger
: >"$LEDGER"
: >"$LEDGER.dups"
: >"$WORK/refused"
SUMMARY=()
PHASE_SOURCE=0

# --- 5. Duplicates across servers ------------------------------------------

log "5. the same content to both servers: one after the other, and at once"
make_batch "$WORK/in/dup-a" 60 0 dup-a
make_batch "$WORK/in/dup-b" 60 1 dup-b
"$CS" send --json -j "$JOBS" --host "127.0.0.1:$P1" "$WORK/in/dup-a" >"$WORK/out-dup-a1" 2>>"$WORK/out-dup.err" || fail "send to $S1 failed"
"$CS" send --json -j "$JOBS" --host "127.0.0.1:$P2" "$WORK/in/dup-a" >"$WORK/out-dup-a2" 2>>"$WORK/out-dup.err" || fail "send to $S2 failed"
"$CS" send --json -j "$JOBS" --host "127.0.0.1:$P1" "$WORK/in/dup-b" >"$WORK/out-dup-b1" 2>>"$WORK/out-dup.err" &
BG_PIDS+=("$!")
"$CS" send --json -j "$JOBS" --host "127.0.0.1:$P2" "$WORK/in/dup-b" >"$WORK/out-dup-b2" 2>>"$WORK/out-dup.err" || fail "send to $S2 failed"
wait "${BG_PIDS[0]}" || fail "send to $S1 failed"
BG_PIDS=()
ACKED=0 REFUSED=0 RETRIED=0
for f in a1 a2 b1 b2; do
    ingest "$WORK/out-dup-$f" "$WORK/in/dup-${f%?}"
done
[ "$(grep -c '"result":"stored"' "$WORK/out-dup-a1")" = "$BATCH" ] || fail "$S1 did not store the first copies"
[ "$(grep -c '"result":"duplicate"' "$WORK/out-dup-a2")" = "$BATCH" ] ||
    fail "$S2 did not recognise content $S1 stored: $(cat "$WORK/out-dup-a2")"
stored_b=$(cat "$WORK/out-dup-b1" "$WORK/out-dup-b2" | grep -c '"result":"stored"' || true)
[ "$stored_b" = "$BATCH" ] || fail "content sent to both at once was stored $stored_b times for $BATCH files"
note "$BATCH files sent to $S1 then $S2: stored once, $BATCH duplicates; $BATCH sent to both at once: $stored_b stored, the rest duplicates"

# --- 6. Faults -------------------------------------------------------------

# gfid_handle BRICK GFID: the name GlusterFS gives the file or folder with
# that gfid inside the brick: a second link to a file, a symbolic link to a
# folder.
gfid_handle() { echo "$1/.glusterfs/${2:0:2}/${2:2:2}/$2"; }

# unhealed: what each brick's index says waits to be healed, each entry
# with its path on the brick and its replication attributes.
unhealed() {
    local b g path
    for b in "${BRICKS[@]}"; do
        echo "brick $b:"
        for g in "$b"/.glusterfs/indices/xattrop/* "$b"/.glusterfs/indices/dirty/*; do
            g=${g##*/}
            case $g in xattrop-* | dirty-* | '*') continue ;; esac
            path=$(gfid_handle "$b" "$g")
            if [ -L "$path" ]; then
                echo "  $g: directory $(readlink "$path")"
            else
                echo "  $g: $(find "$b" -path "$b/.glusterfs" -prune -o -samefile "$path" -print 2>/dev/null | head -n 1)"
            fi
            getfattr -d -m 'trusted.afr' -e hex "$path" 2>/dev/null | sed -n 's/^/    /p' || true
        done
        # Entries a brick holds without a GlusterFS identity (trusted.gfid),
        # which the self-heal daemon cannot name. (A heal still at work may
        # remove some as find walks: its complaints are no failure.)
        find "$b" -mindepth 1 -path "$b/.glusterfs" -prune -o -print0 2>/dev/null |
            while IFS= read -r -d '' path; do
                if lacks_gfid "$path"; then echo "  no gfid: ${path#"$b"}"; fi
            done || true
    done
}

# lacks_gfid PATH: whether PATH itself (not what a link names) is on its
# brick without a gfid: getfattr must say the attribute is not there, not
# merely fail.
lacks_gfid() {
    local out
    out=$(getfattr -h -n trusted.gfid -- "$1" 2>&1) && return 1
    [[ $out == *"No such attribute"* ]]
}

# shd_log: what the self-heal daemons wrote to their log (shared by every
# volume of this machine, wherever glusterd is told to log) since this run
# began; all of it if it has been cut shorter since.
shd_log() {
    local size
    size=$(stat -c %s "$SHD_LOG" 2>/dev/null) || return 0
    if [ "$size" -ge "$SHD_LOG_START" ]; then
        tail -c +"$((SHD_LOG_START + 1))" "$SHD_LOG"
    else
        cat "$SHD_LOG"
    fi
}

# remove_gfidless: does what docs/OPERATIONS.md tells an operator to do
# for a name the self-heal daemon cannot remove. A brick killed between
# creating a file (or an index entry's symbolic link) and giving it its
# gfid (trusted.gfid) keeps the name without one; where the other bricks
# do not have it, the daemon tries to remove it from that brick, logging
# each time "expunging file PARENT-GFID/NAME
# (00000000-0000-0000-0000-000000000000) on VOLUME-client-N", fails for
# want of the gfid, and the folder stays pending for good. The name is
# removed from brick N+1 by hand, and only such a name: in a folder of
# that brick outside .glusterfs, not a folder itself, and without a gfid
# (lacks_gfid). Each one goes in GFIDLESS. (Nothing acknowledged can be
# one: the good bricks have every acknowledged file, and verify reads each
# through both mounts.)
GFIDLESS=()
UUID='[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}'
remove_gfidless() {
    local pgfid n name b dir path
    while IFS=/ read -r pgfid n name; do
        [ "$n" -lt "${#BRICKS[@]}" ] || continue
        b=$(readlink -f "${BRICKS[$n]}") || continue
        dir=$(readlink -f "$(gfid_handle "$b" "$pgfid")") || continue
        [[ $dir == "$b" || $dir == "$b"/* ]] || continue
        [[ $dir != "$b"/.glusterfs && $dir != "$b"/.glusterfs/* ]] || continue
        path=$dir/$name
        if [ -d "$path" ] || { [ ! -f "$path" ] && [ ! -L "$path" ]; } || ! lacks_gfid "$path"; then
            continue
        fi
        rm -- "$path" || continue
        GFIDLESS+=("${path#"$b"} on brick $((n + 1))")
    done < <(shd_log | sed -n "s|.*\] 0-$VOLUME_NAME-replicate-0: expunging file \($UUID\)/\([^/]*\) (00000000-0000-0000-0000-000000000000) on $VOLUME_NAME-client-\([0-9]\) *$|\1/\3/\2|p" | sort -u)
}

# healed_or_heal: whether no entry waits to be healed; if some do, asks
# the self-heal daemon, at most every HEAL_KICK seconds, to heal them now,
# after removing what it could not (remove_gfidless). (It heals by itself
# when a brick comes back, but an entry marked after that waits for its
# next crawl, every cluster.heal-timeout: 10 minutes.)
healed_or_heal() {
    healed && return 0
    if [ "$(now_ms)" -ge "$NEXT_KICK" ]; then
        remove_gfidless
        gl volume heal "$VOLUME_NAME" >/dev/null 2>&1 || true
        NEXT_KICK=$(($(now_ms) + HEAL_KICK * 1000))
    fi
    return 1
}

# heal_after FAULT_END [must]: with the loads stopped, waits for the
# self-heal daemon to have healed every entry, and sets HEALED, the time
# since FAULT_END. Entries still pending after HEAL_WAIT are listed, and
# fail the test with `must`; otherwise HEALED says so and the test goes on:
# reads are served from the good copies meanwhile, which the checks of
# every acknowledged upload on both mounts then cover.
heal_after() {
    local removed=${#GFIDLESS[@]}
    NEXT_KICK=$(($(now_ms) + HEAL_KICK * 1000))
    if wait_until_quiet "$HEAL_WAIT" healed_or_heal; then
        HEALED="healed after $(secs $(($(now_ms) - $1))) s"
        removed=$((${#GFIDLESS[@]} - removed))
        case $removed in
        0) ;;
        1) HEALED+=", 1 name without a gfid removed by hand" ;;
        *) HEALED+=", $removed names without a gfid removed by hand" ;;
        esac
        return
    fi
    unhealed >&2
    echo "the self-heal daemon's last warnings and errors:" >&2
    shd_log | grep -E '\] [EW] \[' | tail -n 20 | sed 's/^/    /' >&2 || true
    [ "${2:-}" != must ] || fail "entries still unhealed ${HEAL_WAIT}s after the faults"
    HEALED="NOT healed after ${HEAL_WAIT} s ($(heal_pending) entries left, listed above)"
    note "$HEALED"
}

# wait_until_quiet SECONDS COMMAND...: wait_until that returns 1 instead
# of failing.
wait_until_quiet() {
    local deadline
    deadline=$(($(now_ms) + $1 * 1000))
    shift
    until "$@"; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

log "6a. one brick killed for ${BRICK_DOWN}s, then restarted"
start_phase brick-killed
pid=$(brick_pid 3)
kill -KILL "$pid"
wait_until 10 "brick 3 gone" gone "$pid"
sleep "$BRICK_DOWN"
t0=$(now_ms)
restart_bricks
online=$(($(now_ms) - t0))
end_phase
heal_after "$t0"
[ $((PROBE_FAILED + REFUSED)) = 0 ] || fail "uploads failed with one brick of three down"
phase_line "one brick killed ${BRICK_DOWN}s:" "online $(secs "$online") s after volume start force, $HEALED"

log "6b. one brick frozen (SIGSTOP) for ${FREEZE}s"
start_phase brick-frozen
pid=$(brick_pid 2)
kill -STOP "$pid"
sleep "$FREEZE"
kill -CONT "$pid"
t0=$(now_ms)
end_phase
heal_after "$t0"
[ $((PROBE_FAILED + REFUSED)) = 0 ] || fail "uploads failed with one brick of three frozen"
phase_line "one brick frozen ${FREEZE}s:" "after SIGCONT $HEALED"

log "6c. two bricks of three killed for ${QUORUM_DOWN}s: quorum lost"
started1=$($DOCKER inspect -f '{{.State.StartedAt}}' "$S1")
started2=$($DOCKER inspect -f '{{.State.StartedAt}}' "$S2")
start_phase quorum-lost
p1=$(brick_pid 1)
p2=$(brick_pid 2)
kill -KILL "$p1" "$p2"
wait_until 10 "bricks 1 and 2 gone" gone "$p1"
wait_until 10 "bricks 1 and 2 gone" gone "$p2"
down=$(now_ms)
sleep "$QUORUM_DOWN"
t0=$(now_ms)
restart_bricks
# Back when each server files a new upload again.
bmp $(((63 << 18) + 1)) "$WORK/back.bmp"
back() {
    local reply
    reply=$(put "$1" "back-$1.bmp" "$WORK/back.bmp" 2>/dev/null) || reply=""
    [[ $reply == "OK "* ]] || return 1
    echo "${reply#OK }" | awk -v s="$(sha256sum <"$WORK/back.bmp" | cut -d' ' -f1)" '{ print $1, s }' >>"$LEDGER"
}
wait_until 60 "$S1 filing again" back "$P1"
wait_until 60 "$S2 filing again" back "$P2"
recovery=$(($(now_ms) - t0))
end_phase
heal_after "$t0"
[ "$PROBE_FAILED" -gt 0 ] || fail "no raw upload got ERR storage-failed while quorum was lost"
awk -v from="$down" -v to="$t0" '$1 >= from && $1 < to && $5 == "OK" { bad++ } END { exit bad > 0 }' "$WORK/probe-$PHASE" ||
    fail "a raw upload was acknowledged while quorum was lost"
[ "$($DOCKER inspect -f '{{.State.StartedAt}}' "$S1")" = "$started1" ] || fail "$S1 was restarted"
[ "$($DOCKER inspect -f '{{.State.StartedAt}}' "$S2")" = "$started2" ] || fail "$S2 was restarted"
phase_line "two bricks killed ${QUORUM_DOWN}s:" "both servers filing $(secs "$recovery") s after volume start force, not restarted; $HEALED"

log "6d. one server killed with SIGKILL and started again"
# The staging folders, by inode: the one that keeps its name is the other
# server's; a new inode under it means the restarted server swept it.
staging_before=$(stat -c '%n %i' "$M1/data/.staging"/*/ | sort)
start_phase server-killed
$DOCKER kill -s KILL "$S1" >/dev/null
t0=$(now_ms)
$DOCKER start "$S1" >/dev/null
wait_healthy "$S1"
recovery=$(($(now_ms) - t0))
# The engine publishes the restarted container on a new port.
P1=$(host_port "$S1")
echo "$P1" >"$WORK/port-s1"
end_phase cut-off
staging_after=$(stat -c '%n %i' "$M1/data/.staging"/*/ | sort)
swept=$(join <(echo "$staging_before") <(echo "$staging_after") | awk '$2 != $3 { print "made again" } $2 == $3 { print "kept" }')
phase_line "server killed -9:" "healthy $(secs "$recovery") s after docker start; the other server's staging folder: ${swept:-gone}"

# --- 7. Afterwards ---------------------------------------------------------

log "7. every acknowledged upload on both mounts"
heal_after "$(now_ms)" must
verify
note "$(wc -l <"$WORK/acked") distinct acknowledged files, all present and byte-identical on both mounts;" \
    "lost $LOST; $EXTRA stored but never acknowledged (refused or cut off); $COPIES contents stored twice"
folders=$(find "$M1/data/.staging" -mindepth 1 -maxdepth 1 -type d | wc -l)
[ "$folders" = 2 ] || fail "$folders staging folders for the 2 servers running"
leftovers=$(live_staging)
[ -z "$leftovers" ] || fail "files left in live staging folders: $leftovers"
note "one staging folder per running server, no staging file left in them"
# Uploads acknowledged while their index entry could not be made (quorum
# lost in between): the next upload of the content must store it again
# and index it, and the one after that be its duplicate.
unindexed=$( (logs "$S1"; logs "$S2") | sed -n 's|.* -> OK \([a-z_]*/[^ ]*\) .*stored, but not indexed: .*|\1|p')
n_unindexed=0
for path in $unindexed; do
    mkdir -p "$WORK/reindex/$n_unindexed"
    cp "$M2/data/$path" "$WORK/reindex/$n_unindexed/"
    (cd "$WORK/reindex/$n_unindexed" && sha256sum -- *) >"$WORK/reindex/$n_unindexed.sums"
    flags=()
    [ "${path%%/*}" != not_trusted ] || flags=(--plain)
    for pass in 1 2; do
        "$CS" send --json "${flags[@]}" --host "127.0.0.1:$P2" "$WORK/reindex/$n_unindexed" \
            >"$WORK/reindex/$n_unindexed.$pass" 2>>"$WORK/reindex.err" || fail "re-sending $path failed"
        grep -q "\"stored\":\"${path%%/*}/" "$WORK/reindex/$n_unindexed.$pass" || fail "re-sent $path went elsewhere"
        ingest "$WORK/reindex/$n_unindexed.$pass" "$WORK/reindex/$n_unindexed"
    done
    grep -q '"result":"duplicate"' "$WORK/reindex/$n_unindexed.2" ||
        fail "$path, stored unindexed, is still not recognised when sent again: $(cat "$WORK/reindex/$n_unindexed.2")"
    stored=$(sed -n 's/.*"stored":"\([^"]*\)".*/\1/p' "$WORK/reindex/$n_unindexed.2")
    [ "$(sha256sum <"$M1/data/$stored")" = "$(sha256sum <"$M1/data/$path")" ] || fail "$stored does not hold the content of $path"
    n_unindexed=$((n_unindexed + 1))
done
note "$n_unindexed uploads acknowledged as stored, but not indexed (quorum lost in between); each, sent again, was indexed and then recognised"
$DOCKER stop "$S1" "$S2" >/dev/null

# --- 8. The Swarm stack on the gluster mount --------------------------------

log "8. the Swarm stack with its data volume bound to the gluster mount"
state=$($DOCKER info -f '{{.Swarm.LocalNodeState}}')
case $state in
    inactive)
        $DOCKER swarm init --advertise-addr 127.0.0.1 >/dev/null
        SWARM_CREATED=1
        ;;
    active) ;;
    *) fail "this node's swarm state is '$state'" ;;
esac
[ "$($DOCKER info -f '{{.Swarm.ControlAvailable}}')" = true ] || fail "this node is not a swarm manager"
# The stack's volume, made first on the node as deploy/README.md says: a
# local volume bound to the data folder on the mount.
$DOCKER volume create --driver local --opt type=none --opt o=bind --opt "device=$M1/data" \
    --label "$LABEL" "${STACK}_data" >/dev/null
t0=$(now_ms)
STACK_DEPLOYED=1
COLORSORT_IMAGE=$IMAGE COLORSORT_REPLICAS=2 COLORSORT_ENDPOINT_MODE=dnsrr \
    $DOCKER stack deploy --resolve-image never -c deploy/swarm.yaml "$STACK" >"$WORK/deploy.log" 2>&1 ||
    { cat "$WORK/deploy.log" >&2; fail "docker stack deploy failed"; }
converged() {
    [ "$($DOCKER ps -q --filter "label=com.docker.swarm.service.name=${STACK}_colorsort" --filter health=healthy | wc -l)" = 2 ]
}
wait_until 120 "two healthy replicas" converged
deploy_ms=$(($(now_ms) - t0))
make_batch "$WORK/in/stack" 61 0 stack
cp "$WORK/in/dup-a/"*.bmp "$WORK/in/stack/"
(cd "$WORK/in/stack" && sha256sum -- *.bmp) >"$WORK/in/stack.sums"
chmod -R a+rX "$WORK/in/stack"
$DOCKER run --rm --label "$LABEL" --network "${STACK}_net" "${HARDENING[@]}" -v "$WORK/in/stack:/in:ro" \
    "$IMAGE" send --json -j "$JOBS" --host colorsort:6666 /in >"$WORK/out-stack" 2>"$WORK/out-stack.err" ||
    { cat "$WORK/out-stack.err" >&2; fail "send to the stack failed"; }
ACKED=0 REFUSED=0 RETRIED=0
ingest "$WORK/out-stack" "$WORK/in/stack"
[ "$(grep -c '"result":"duplicate"' "$WORK/out-stack")" = "$BATCH" ] ||
    fail "the stack did not recognise the $BATCH files the servers stored before"
verify
note "2 replicas healthy $(secs "$deploy_ms") s after deploy; $ACKED uploads acknowledged through the service," \
    "$BATCH as duplicates of earlier files; all on both mounts, lost $LOST"

# --- Summary ---------------------------------------------------------------

echo
echo "gluster test passed in $(($(date +%s) - STARTED))s (setup of glusterd, volume and mounts: $(secs "$SETUP_MS") s)"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
for path in "${GFIDLESS[@]}"; do echo "  removed by hand, the self-heal daemon failing to: $path, which had no gfid"; done
echo "  afterwards: $(wc -l <"$WORK/acked") distinct files acknowledged, all on both mounts, lost $LOST;" \
    "$n_unindexed acknowledged as stored, but not indexed, each indexed by a re-send"

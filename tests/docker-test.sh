#!/usr/bin/env bash
# End-to-end test of the colorsort container image, run by `make docker-test`.
#
# It builds the image under a tag of its own, runs it with the hardening
# flags on fresh named volumes and checks, in order: the health check, the
# key and its logged fingerprint, uploads from `colorsort send` and from the
# age CLI, the stored files read back through a second container (class and
# bytes), a restart on the same volume (same key, same files), the process's
# user and privileges, refusals of unwritable data folders, `docker stop`
# during an upload, the image size, and two replicas on one volume taking
# 100 concurrent uploads of distinct images plus 10 copies of one more
# (which the server must store once: it answers re-sent content as `dup`),
# a container limited to 256 MiB of memory taking concurrent large
# uploads without being OOM-killed (its memory budget fitted to the limit),
# and one limited to 512 MiB taking decoder bombs at once (their workers
# held to their limits) while a legitimate upload is stored within 2 s.
#
# Needs a Docker engine, bash, tar and sha256sum; uses the age CLI when it is
# installed (SEAL payloads are otherwise replaced by plaintext PUTs). Every
# container, volume and image tag it creates carries this run's name and is
# removed on exit, whether the test passes or fails; it never touches a
# `colorsort` container, the `colorsort-data` volume or `colorsort:latest`.
set -eEuo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
ROOT=$PWD
TEST_NAME="docker test"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
DOCKER=${DOCKER:-docker}
RUN="$$-$(date +%s)"
PREFIX="colorsort-test-$RUN"
LABEL="colorsort.test=$RUN"
IMAGE="colorsort:test-$RUN"
HARDENING=(--read-only --cap-drop ALL --security-opt no-new-privileges)
SERVICE_UID=10001
MAX_IMAGE_BYTES=15000000
MAX_STOP_MS=3000
CONCURRENT=100
COPIES=10
SMALL_MEMORY=256m
BIG_UPLOADS=12
# 1792 x 1792 x 3 bytes: a 9.6 MB BMP. Its upload is charged the payload,
# its worker's copy and its pixels (as much again each), plus the worker's
# fixed 13 MiB: 42 MB of the 48 MB budget fitted to 256 MiB.
BIG_SIDE=1792
BOMB_MEMORY=512m
# Bombs sent at once to the --memory $BOMB_MEMORY container, each three times.
BOMBS=12
IMAGES_DIR=$ROOT/test-data/images
EXPECTED=$IMAGES_DIR/expected.txt
# The client on the host is the very binary the image holds.
CS=$ROOT/target/docker-root/colorsort

WORK=$(mktemp -d "${TMPDIR:-/tmp}/colorsort-docker-test.XXXXXX")
export XDG_CONFIG_HOME=$WORK/config
BG_PIDS=()
STARTED=$(date +%s)


cleanup() {
    local rc=$? pid c v
    trap - EXIT INT TERM ERR
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    local containers volumes
    containers=$($DOCKER ps -aq --filter "label=$LABEL" 2>/dev/null || true)
    if [ "$rc" -ne 0 ]; then
        for c in $containers; do
            printf -- '--- last log lines of %s\n' "$($DOCKER inspect -f '{{.Name}}' "$c" 2>/dev/null)" >&2
            $DOCKER logs --tail 15 "$c" 2>&1 | sed 's/^/    /' >&2 || true
        done
    fi
    for c in $containers; do
        $DOCKER rm -f -v "$c" >/dev/null 2>&1 || true
    done
    volumes=$($DOCKER volume ls -q --filter "label=$LABEL" 2>/dev/null || true)
    for v in $volumes; do
        $DOCKER volume rm "$v" >/dev/null 2>&1 || true
    done
    $DOCKER rmi "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    if [ "$rc" -ne 0 ]; then
        echo "docker test FAILED after $(($(date +%s) - STARTED))s (cleaned up run $RUN)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "FAIL: unexpected error at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Functions -------------------------------------------------------------

new_volume() { $DOCKER volume create --label "$LABEL" "$PREFIX-$1" >/dev/null; }

# run_server NAME VOLUME PORT [docker run options...]: starts the server
# detached and hardened, published on 127.0.0.1:PORT (PORT empty: the
# engine picks a free one). The health check is probed every second here,
# so that waiting for it is quick; its command is the image's own.
run_server() {
    local name=$1 volume=$2 port=$3
    shift 3
    $DOCKER run -d --name "$name" --label "$LABEL" \
        -p "127.0.0.1:$port:6666" -v "$volume:/data" "${HARDENING[@]}" \
        --health-interval 1s "$@" "$IMAGE" >/dev/null
}

host_port() {
    local out
    out=$($DOCKER port "$1" 6666/tcp)
    out=${out%%$'\n'*}
    echo "${out##*:}"
}

wait_healthy() {
    local name=$1 status i
    for i in $(seq 120); do
        status=$($DOCKER inspect -f '{{.State.Health.Status}}' "$name")
        [ "$status" = healthy ] && return 0
        if [ "$($DOCKER inspect -f '{{.State.Running}}' "$name")" != true ]; then
            fail "$name stopped before it was healthy"
        fi
        sleep 0.5
    done
    fail "$name not healthy after 60 s (status: $status)"
}

wait_exited() {
    local name=$1 i
    for i in $(seq 60); do
        [ "$($DOCKER inspect -f '{{.State.Running}}' "$name")" = false ] && return 0
        sleep 0.25
    done
    fail "$name still running after 15 s"
}

logs() { $DOCKER logs "$1" 2>&1; }

# has_log CONTAINER PATTERN: whether a log line matches. (The log is read
# whole first: `grep -q` in a pipe could cut it short, and pipefail would
# then count the writer's SIGPIPE as no match.)
has_log() {
    local text
    text=$(logs "$1")
    grep -q -- "$2" <<<"$text"
}

# The first log line matching PATTERN, without its timestamp.
log_line() {
    local text
    text=$(logs "$1")
    grep -m 1 -- "$2" <<<"$text" | cut -d' ' -f2- || true
}

# The fingerprint the server printed in its start line.
logged_fingerprint() {
    local text
    text=$(logs "$1")
    sed -n 's/.* listening on .* key \(SHA256:[^ ]*\) .*/\1/p' <<<"$text" | sed -n 1p
}

# request PORT LINE: sends one request line, prints the reply line.
request() {
    local port=$1 line=$2 fd reply=""
    exec {fd}<>"/dev/tcp/127.0.0.1/$port"
    printf '%s\n' "$line" >&"$fd"
    IFS= read -r -t 10 reply <&"$fd" || true
    exec {fd}>&-
    printf '%s\n' "${reply%$'\r'}"
}

# upload PORT VERB NAME FILE: sends FILE as the payload of a PUT or SEAL,
# prints the reply line.
upload() {
    local port=$1 verb=$2 name=$3 file=$4 fd reply=""
    exec {fd}<>"/dev/tcp/127.0.0.1/$port"
    printf '%s %s %d\n' "$verb" "$name" "$(file_size "$file")" >&"$fd"
    cat "$file" >&"$fd"
    IFS= read -r -t 30 reply <&"$fd" || true
    exec {fd}>&-
    printf '%s\n' "${reply%$'\r'}"
}

file_size() {
    local n
    n=$(wc -c <"$1")
    echo $((n))
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# A 1x1 24-bit BMP of colour R G B, written to stdout.
bmp() {
    local le='' field value width k
    # Header fields as value:width, little-endian; the pixel is stored
    # blue, green, red, then one byte of row padding.
    for field in 58:4 0:4 54:4 40:4 1:4 1:4 1:2 24:2 0:4 4:4 2835:4 2835:4 0:4 0:4 "$3":1 "$2":1 "$1":1 0:1; do
        value=${field%:*} width=${field#*:}
        for ((k = 0; k < width; k++)); do
            le+=$(printf '\\x%02x' $(((value >> (8 * k)) & 255)))
        done
    done
    printf 'BM%b' "$le"
}

# big_bmp SIDE: a SIDE x SIDE 24-bit BMP of random pixels (SIDE a multiple
# of 4, so rows need no padding), written to stdout.
big_bmp() {
    local side=$1 pixels le='' field value width k
    pixels=$((side * side * 3))
    for field in $((pixels + 54)):4 0:4 54:4 40:4 "$side":4 "$side":4 1:2 24:2 0:4 "$pixels":4 2835:4 2835:4 0:4 0:4; do
        value=${field%:*} width=${field#*:}
        for ((k = 0; k < width; k++)); do
            le+=$(printf '\\x%02x' $(((value >> (8 * k)) & 255)))
        done
    done
    printf 'BM%b' "$le"
    head -c "$pixels" /dev/urandom
}

# container_peak NAME: the most memory the container's cgroup has used, in
# MiB, from the host's cgroup files (v1 or v2); "unknown" if not visible.
container_peak() {
    local id f
    id=$($DOCKER inspect -f '{{.Id}}' "$1")
    for f in "/sys/fs/cgroup/memory/docker/$id/memory.max_usage_in_bytes" \
        "/sys/fs/cgroup/system.slice/docker-$id.scope/memory.peak" \
        "/sys/fs/cgroup/docker/$id/memory.peak"; do
        if [ -r "$f" ]; then
            echo "$(($(cat "$f") / 1048576)) MiB"
            return
        fi
    done
    echo unknown
}

# seal SRC DEST PUBKEY: the payload to send for SRC, and its verb. With the
# age CLI it is sealed to PUBKEY; without it, it goes in plain with PUT.
seal() {
    if [ "$HAVE_AGE" = 1 ]; then
        age -R "$3" -o "$2" "$1"
        echo SEAL
    else
        cp "$1" "$2"
        echo PUT
    fi
}

# record LEDGER STORED SHA FOLDER [dup]: notes an acknowledged upload,
# checking that the server filed it in the expected folder. The ledger
# lists the files stored; LEDGER.dups the uploads answered as duplicates of
# a stored file, which must name a file of the ledger with the same content.
record() {
    local ledger=$1 stored=$2 digest=$3 folder=$4 dup=${5:-}
    [ "${stored%%/*}" = "$folder" ] || fail "$stored: expected in $folder/"
    if [ "$dup" = dup ]; then
        echo "$stored $digest $folder" >>"$ledger.dups"
    else
        echo "$stored $digest $folder" >>"$ledger"
    fi
}

# The per-file lines of `colorsort send`'s output, `PATH: stored F/NAME r=..`
# or `PATH: duplicate of F/NAME r=..`, as `PATH F/NAME new|dup`.
stored_lines() {
    local line re='^(.+): (stored|duplicate of) ([a-z_]+/[^ ]+) r='
    while IFS= read -r line; do
        if [[ $line =~ $re ]]; then
            if [ "${BASH_REMATCH[2]}" = stored ]; then
                echo "${BASH_REMATCH[1]} ${BASH_REMATCH[3]} new"
            else
                echo "${BASH_REMATCH[1]} ${BASH_REMATCH[3]} dup"
            fi
        fi
    done <"$1"
}

# record_reply LEDGER REPLY SHA FOLDER WHAT: records the upload that got
# REPLY, which must be `OK FOLDER/NAME r=.. g=.. b=..`, with ` dup` after
# it if the content was already stored.
record_reply() {
    local ledger=$1 reply=$2 digest=$3 folder=$4 what=$5 re='^OK ([a-z_]+/[^ ]+) r=[0-9.]+ g=[0-9.]+ b=[0-9.]+( dup)?$'
    [[ $reply =~ $re ]] || fail "$what: upload not acknowledged: ${reply:-(no reply)}"
    if [ -n "${BASH_REMATCH[2]}" ]; then
        record "$ledger" "${BASH_REMATCH[1]}" "$digest" "$folder" dup
    else
        record "$ledger" "${BASH_REMATCH[1]}" "$digest" "$folder"
    fi
}

# snapshot VOLUME DIR: copies the volume out through a container of the
# image that is created, never started, and removed with its anonymous
# volumes; the tar listing (numeric owners) is kept in DIR.list.
snapshot() {
    local volume=$1 dir=$2 reader="$PREFIX-reader"
    $DOCKER create --name "$reader" --label "$LABEL" -v "$volume:/data" "$IMAGE" >/dev/null
    rm -rf "$dir"
    mkdir -p "$dir"
    $DOCKER cp "$reader:/data" - >"$dir.tar"
    $DOCKER rm -v "$reader" >/dev/null
    tar -tvf "$dir.tar" --numeric-owner >"$dir.list"
    tar -xf "$dir.tar" -C "$dir" --no-same-owner
}

# verify_snapshot DIR LEDGER: every acknowledged file is in its folder with
# the bytes that were sent, and the folders hold nothing else. Prints the
# counts per folder as STATS does.
verify_snapshot() {
    local dir=$1/data ledger=$2 stored digest folder
    [ -d "$dir" ] || fail "no data folder in the snapshot"
    while read -r stored digest folder; do
        [ -f "$dir/$stored" ] || fail "acknowledged $stored is missing from the volume"
        [ "$(sha "$dir/$stored")" = "$digest" ] || fail "$stored differs from the file sent"
    done <"$ledger"
    (cd "$dir" && find red green blue not_trusted -type f | sort) >"$WORK/found"
    cut -d' ' -f1 "$ledger" | sort >"$WORK/acked"
    if ! diff -u "$WORK/acked" "$WORK/found" >"$WORK/diff"; then
        cat "$WORK/diff" >&2
        fail "the class folders do not hold exactly the acknowledged uploads"
    fi
    [ -z "$(sort "$WORK/acked" | uniq -d)" ] || fail "one stored name was acknowledged twice"
    while read -r stored digest folder; do
        grep -qxF "$stored $digest $folder" "$ledger" ||
            fail "an upload was answered as a duplicate of $stored, which does not hold its content"
    done <"$ledger.dups"
    local f out=OK
    for f in red green blue not_trusted; do
        out+=" $f=$(grep -c " $f\$" "$ledger" || true)"
    done
    echo "$out"
}

# Classifies the stored images with the server's own code, in a throwaway
# container of the image, and checks that each sits in the folder of its
# class. Prints how many were checked.
verify_classes() {
    local volume=$1 path class n=0
    $DOCKER run --rm --label "$LABEL" --network none "${HARDENING[@]}" \
        -v "$volume:/data:ro" --entrypoint /colorsort "$IMAGE" \
        classify /data/red /data/green /data/blue >"$WORK/classes" ||
        fail "colorsort classify failed on the volume"
    while read -r path class _; do
        [ "$(basename "$(dirname "$path")")" = "$class" ] || fail "$path classifies as $class"
        n=$((n + 1))
    done <"$WORK/classes"
    echo "$n"
}

# stop_during_upload CONTAINER PORT NAME PAYLOAD VERB COMPLETE: starts an
# upload, sends the request line and half the payload, runs `docker stop`
# and, once the server has logged the SIGTERM, sends the rest of the
# payload if COMPLETE is 1 (otherwise leaves the upload hanging). Sets
# STOP_MS (how long `docker stop` took) and STOP_REPLY.
stop_during_upload() {
    local name=$1 port=$2 file=$4 verb=$5 complete=$6 fd size half t0 pid i
    size=$(file_size "$file")
    half=$((size / 2))
    exec {fd}<>"/dev/tcp/127.0.0.1/$port"
    printf '%s %s %d\n' "$verb" "$3" "$size" >&"$fd"
    head -c "$half" "$file" >&"$fd"
    t0=$(now_ms)
    $DOCKER stop -t 10 "$name" >/dev/null &
    pid=$!
    BG_PIDS+=("$pid")
    for i in $(seq 100); do
        has_log "$name" 'received SIGTERM' && break
        sleep 0.02
    done
    has_log "$name" 'received SIGTERM' || fail "$name did not log the SIGTERM"
    if [ "$complete" = 1 ]; then
        tail -c +"$((half + 1))" "$file" >&"$fd" || true
    fi
    STOP_REPLY=""
    IFS= read -r -t 10 STOP_REPLY <&"$fd" || true
    STOP_REPLY=${STOP_REPLY%$'\r'}
    wait "$pid" || fail "docker stop $name failed"
    BG_PIDS=()
    STOP_MS=$(($(now_ms) - t0))
    exec {fd}>&-
    [ "$STOP_MS" -lt "$MAX_STOP_MS" ] || fail "docker stop took ${STOP_MS} ms (limit $MAX_STOP_MS)"
    local code
    code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$name")
    [ "$code" = 0 ] || fail "$name exited with code $code"
}

# The plaintext whose sealed copy was in flight must be stored if and only
# if the upload was acknowledged.
check_in_flight() {
    local ledger=$1 reply=$2 digest=$3 folder=$4 what=$5 snap=$6
    if [[ $reply == "OK "* ]]; then
        record_reply "$ledger" "$reply" "$digest" "$folder" "$what"
        echo "acknowledged ($reply), stored"
    else
        local sums
        sums=$(find "$snap/data" -type f -exec sha256sum {} +)
        if grep -q "^$digest " <<<"$sums"; then
            fail "$what: not acknowledged (${reply:-no reply}), yet stored"
        fi
        echo "not acknowledged (${reply:-connection closed}), not stored"
    fi
}

# --- 1. Build ------------------------------------------------------------

log "1. building the static binary and the image $IMAGE"
if ! make -C "$ROOT" --no-print-directory docker-build DOCKER_TAGS="$IMAGE" >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log" >&2
    fail "make docker-build failed"
fi
note "$(grep '^static binary:' "$WORK/build.log")"
BINARY_BYTES=$(file_size "$CS")
# The decode workers' fault hook is in test builds only.
if grep -q COLORSORT_WORKER_FAULT "$CS"; then
    fail "the release binary has the decode workers' fault hook"
fi
if [ -x "$ROOT/target/debug/colorsort" ] && ! grep -q COLORSORT_WORKER_FAULT "$ROOT/target/debug/colorsort"; then
    fail "the test build has no fault hook: the check above proves nothing"
fi
note "the decode workers' fault hook: absent from the release binary$([ -x "$ROOT/target/debug/colorsort" ] && echo ', present in the test build')"
config=$($DOCKER image inspect -f '{{json .Config.User}} {{json .Config.Healthcheck.Test}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$IMAGE")
[ "$config" = '"10001:10001" ["CMD","/colorsort","ping"] ["/colorsort"] ["serve"]' ] ||
    fail "unexpected image configuration: $config"
version=$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { print $2; exit }' Cargo.toml)
label=$($DOCKER image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMAGE")
[ "$label" = "$version" ] || fail "image version label is '$label', Cargo.toml says '$version'"
[ -f "$EXPECTED" ] || fail "missing $EXPECTED"
if command -v age >/dev/null 2>&1; then HAVE_AGE=1; else HAVE_AGE=0; fi

# --- 2, 3. Start -----------------------------------------------------------

log "2. starting a hardened container on a fresh volume"
new_volume a
VOL_A=$PREFIX-a
C1=$PREFIX-1
run_server "$C1" "$VOL_A" ""
PORT=$(host_port "$C1")
[[ $PORT =~ ^[0-9]+$ && $PORT != 6666 ]] || fail "unexpected published port '$PORT'"
note "published on 127.0.0.1:$PORT"

log "3. waiting for the health check"
t0=$(now_ms)
wait_healthy "$C1"
note "healthy after $(($(now_ms) - t0)) ms"
has_log "$C1" 'generated a 3072-bit RSA key' || fail "$C1 did not log a new 3072-bit key"

# --- 4. Key ----------------------------------------------------------------

log "4. key and fingerprint"
HOST=127.0.0.1:$PORT
"$CS" key --host "$HOST" >"$WORK/server.pub"
FP=$("$CS" key --host "$HOST" --fingerprint)
[[ $FP == SHA256:* ]] || fail "bad fingerprint '$FP'"
[ "$(request "$PORT" KEY)" = "OK $(cat "$WORK/server.pub")" ] || fail "KEY reply differs from colorsort key"
[ "$(logged_fingerprint "$C1")" = "$FP" ] || fail "log says $(logged_fingerprint "$C1"), KEY says $FP"
if command -v ssh-keygen >/dev/null 2>&1; then
    ssh_fp=$(ssh-keygen -lf "$WORK/server.pub" | cut -d' ' -f2)
    [ "$ssh_fp" = "$FP" ] || fail "ssh-keygen says $ssh_fp, colorsort says $FP"
fi
note "$FP (the same in the log$(command -v ssh-keygen >/dev/null 2>&1 && echo ' and from ssh-keygen'))"

# --- 5. Uploads ------------------------------------------------------------

LEDGER=$WORK/ledger-a
: >"$LEDGER"
: >"$LEDGER.dups"
files=()
declare -A CLASS
while read -r name class _; do
    [ -n "$name" ] || continue
    [ -f "$IMAGES_DIR/$name" ] || fail "$name is listed in expected.txt but missing"
    CLASS[$name]=$class
    files+=("$IMAGES_DIR/$name")
done <"$EXPECTED"
[ "${#files[@]}" -gt 0 ] || fail "no images listed in $EXPECTED"

log "5. sending ${#files[@]} images with colorsort send"
"$CS" send --host "$HOST" -j 4 "${files[@]}" >"$WORK/send.out" 2>"$WORK/send.err" ||
    { cat "$WORK/send.out" "$WORK/send.err" >&2; fail "colorsort send failed"; }
sent=0
while read -r path stored kind; do
    record "$LEDGER" "$stored" "$(sha "$path")" "${CLASS[$(basename "$path")]}" "$kind"
    sent=$((sent + 1))
done < <(stored_lines "$WORK/send.out")
[ "$sent" = "${#files[@]}" ] || fail "colorsort send acknowledged $sent of ${#files[@]} files"
note "$(tail -n 1 "$WORK/send.out")"
# A plain upload, of an image of its own (content already stored would be
# answered as a duplicate).
bmp 10 20 30 >"$WORK/plain.bmp"
"$CS" send --host "$HOST" --plain "$WORK/plain.bmp" >"$WORK/plain.out" || fail "colorsort send --plain failed"
read -r _ stored kind < <(stored_lines "$WORK/plain.out")
record "$LEDGER" "$stored" "$(sha "$WORK/plain.bmp")" not_trusted "$kind"
UPLOADS_CLIENT=$((sent + 1))

UPLOADS_AGE=0
if [ "$HAVE_AGE" = 1 ]; then
    log "5. sealing with the age CLI ($(age --version)) and sending with SEAL"
    # The same images: the server must open each and find it stored (the
    # reply names the copy `colorsort send` stored, marked dup); and three
    # new ones, which it must file.
    mkdir -p "$WORK/age"
    bmp 250 1 1 >"$WORK/age/new-red.bmp"
    bmp 1 250 1 >"$WORK/age/new-green.bmp"
    bmp 1 1 250 >"$WORK/age/new-blue.bmp"
    CLASS[new-red.bmp]=red CLASS[new-green.bmp]=green CLASS[new-blue.bmp]=blue
    for path in "${files[@]}" "$WORK"/age/new-*.bmp; do
        name=$(basename "$path")
        age -R "$WORK/server.pub" -o "$WORK/age/$name.age" "$path"
        reply=$(upload "$PORT" SEAL "age-$name" "$WORK/age/$name.age")
        record_reply "$LEDGER" "$reply" "$(sha "$path")" "${CLASS[$name]}" "age-$name"
        UPLOADS_AGE=$((UPLOADS_AGE + 1))
    done
    dups=$(wc -l <"$LEDGER.dups")
    note "$UPLOADS_AGE sealed uploads acknowledged: $dups as duplicates of the files sent before, $((UPLOADS_AGE - dups)) stored"
    [ "$dups" = "${#files[@]}" ] || fail "expected ${#files[@]} duplicates, got $dups"
else
    log "5. SKIPPED: uploads sealed by the age CLI (age is not installed)"
fi

# --- 6. Read back ----------------------------------------------------------

log "6. reading the volume back through a second container"
snapshot "$VOL_A" "$WORK/snap1"
counts=$(verify_snapshot "$WORK/snap1" "$LEDGER")
[ "$(request "$PORT" STATS)" = "$counts" ] || fail "STATS says '$(request "$PORT" STATS)', the volume holds '$counts'"
grep -Eq "^drwx------ $SERVICE_UID/$SERVICE_UID .* data/\$" "$WORK/snap1.list" ||
    fail "the volume's root is not drwx------ $SERVICE_UID/$SERVICE_UID: $(grep ' data/$' "$WORK/snap1.list")"
grep -Eq "^-rw------- $SERVICE_UID/$SERVICE_UID .* data/key.pem\$" "$WORK/snap1.list" ||
    fail "key.pem is not -rw------- $SERVICE_UID/$SERVICE_UID"
classified=$(verify_classes "$VOL_A")
note "$(wc -l <"$LEDGER") files byte-identical and in their expected folders ($counts);" \
    "$classified re-classified in a throwaway container; volume root drwx------ $SERVICE_UID"

# --- 7. Replace the container ----------------------------------------------

log "7. docker rm -f, and a new container on the same volume and port"
$DOCKER rm -f "$C1" >/dev/null
C2=$PREFIX-2
run_server "$C2" "$VOL_A" "$PORT"
wait_healthy "$C2"
[ "$(logged_fingerprint "$C2")" = "$FP" ] || fail "$C2 logs key $(logged_fingerprint "$C2"), was $FP"
! has_log "$C2" 'generated a' || fail "$C2 generated a new key"
[ "$("$CS" key --host "$HOST" --fingerprint)" = "$FP" ] || fail "$C2 presents another key"
[ "$(request "$PORT" STATS)" = "$counts" ] || fail "STATS after the restart: '$(request "$PORT" STATS)', expected '$counts'"
# The pin from the first container must hold: no --accept-new-key.
extra=$WORK/extra.bmp
bmp 3 4 240 >"$extra"
"$CS" send --host "$HOST" "$extra" >"$WORK/extra.out" 2>&1 || { cat "$WORK/extra.out" >&2; fail "send to the new container failed"; }
read -r _ stored kind < <(stored_lines "$WORK/extra.out")
[ "$kind" = new ] || fail "a new image was answered as a duplicate"
record "$LEDGER" "$stored" "$(sha "$extra")" blue
UPLOADS_CLIENT=$((UPLOADS_CLIENT + 1))
snapshot "$VOL_A" "$WORK/snap2"
counts=$(verify_snapshot "$WORK/snap2" "$LEDGER")
note "same key, every file present and identical, STATS agrees ($counts); the pinned client sends on"

# --- 8. User and privileges ------------------------------------------------

log "8. the server runs as uid $SERVICE_UID without privileges"
all=$($DOCKER top "$C2" -o uid,gid,pid,ppid,comm | tail -n +2)
top=$(awk '$5 == "colorsort"' <<<"$all")
[ "$(echo "$top" | wc -l)" = 1 ] || fail "expected one server process in $C2: $all"
read -r uid gid server_pid _ comm <<<"$top"
[ "$uid $gid $comm" = "$SERVICE_UID $SERVICE_UID colorsort" ] || fail "docker top: $top"
# Besides it, only its decode workers: its children, as the same user,
# filtered and without privileges.
workers=$(awk -v p="$server_pid" '$5 != "colorsort" { print ($1 == "'$SERVICE_UID'" && $2 == "'$SERVICE_UID'" && $4 == p && $5 == "decode-worker") ? $3 : "bad:" $0 }' <<<"$all")
[ -n "$workers" ] || fail "no decode workers started ahead of need in $C2: $all"
if grep -q '^bad:' <<<"$workers"; then
    fail "a process in $C2 is not one of the server's decode workers: $all"
fi
for wpid in $workers; do
    [ -r "/proc/$wpid/status" ] || continue
    wstatus=$(grep -E '^(CapEff|NoNewPrivs|Seccomp):' "/proc/$wpid/status" | tr -s '\t' ' ')
    [ "$wstatus" = "$(printf 'CapEff: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2')" ] ||
        fail "decode worker $wpid: $wstatus"
done
hc=$($DOCKER inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}' "$C2")
[ "$hc" = "10001:10001 true [ALL] [no-new-privileges]" ] || fail "container settings: $hc"
pid=$($DOCKER inspect -f '{{.State.Pid}}' "$C2")
if [ -r "/proc/$pid/status" ]; then
    status=$(grep -E '^(Uid|Gid|CapEff|NoNewPrivs):' "/proc/$pid/status" | tr -s '\t' ' ')
    expected=$(printf 'Uid: %s %s %s %s\nGid: %s %s %s %s\nCapEff: 0000000000000000\nNoNewPrivs: 1' \
        $SERVICE_UID $SERVICE_UID $SERVICE_UID $SERVICE_UID $SERVICE_UID $SERVICE_UID $SERVICE_UID $SERVICE_UID)
    [ "$status" = "$expected" ] || fail "/proc/$pid/status: $status"
    note "docker top, docker inspect and /proc/$pid/status: uid/gid $SERVICE_UID, no capabilities, NoNewPrivs 1"
else
    note "docker top and docker inspect: uid/gid $SERVICE_UID (/proc/$pid not visible from here)"
fi

# --- Unwritable data folders -----------------------------------------------

log "8b. the server refuses unwritable data folders at start"
# The volume in use, mounted read-only.
RO=$PREFIX-ro
$DOCKER run -d --name "$RO" --label "$LABEL" "${HARDENING[@]}" -v "$VOL_A:/data:ro" "$IMAGE" >/dev/null
wait_exited "$RO"
[ "$($DOCKER inspect -f '{{.State.ExitCode}}' "$RO")" = 1 ] || fail "$RO: exit code is not 1"
has_log "$RO" 'data directory /data is not writable' || fail "$RO: $(logs "$RO")"
note "read-only volume, exit 1: $(logs "$RO")"
# A volume owned by root: nocopy keeps the image's /data from initialising it.
new_volume root
ROOTED=$PREFIX-rooted
$DOCKER run -d --name "$ROOTED" --label "$LABEL" "${HARDENING[@]}" \
    --mount "type=volume,src=$PREFIX-root,dst=/data,volume-nocopy" "$IMAGE" >/dev/null
wait_exited "$ROOTED"
[ "$($DOCKER inspect -f '{{.State.ExitCode}}' "$ROOTED")" = 1 ] || fail "$ROOTED: exit code is not 1"
has_log "$ROOTED" 'data directory /data is not writable' || fail "$ROOTED: $(logs "$ROOTED")"
note "root-owned volume, exit 1: $(logs "$ROOTED")"

# --- 9. Stop during an upload ----------------------------------------------

log "9. docker stop while an upload is in flight"
# Images of their own, so that "absent" can be told by content.
bmp 201 7 7 >"$WORK/stop-a.bmp"
bmp 7 7 202 >"$WORK/stop-b.bmp"
class_a=red class_b=blue
[ "$HAVE_AGE" = 1 ] || class_a=not_trusted class_b=not_trusted
verb=$(seal "$WORK/stop-a.bmp" "$WORK/stop-a.payload" "$WORK/server.pub")
seal "$WORK/stop-b.bmp" "$WORK/stop-b.payload" "$WORK/server.pub" >/dev/null
# (a) Default 5 s grace: the rest of the payload arrives after SIGTERM.
stop_during_upload "$C2" "$PORT" stop-a.bmp "$WORK/stop-a.payload" "$verb" 1
STOP_A_MS=$STOP_MS
reply_a=$STOP_REPLY
snapshot "$VOL_A" "$WORK/snap3"
outcome_a=$(check_in_flight "$LEDGER" "$reply_a" "$(sha "$WORK/stop-a.bmp")" "$class_a" stop-a "$WORK/snap3")
note "(a) payload completed after SIGTERM: stop took ${STOP_A_MS} ms, exit 0; upload $outcome_a"
# (b) A stalled upload and a 1 s grace: the server gives up on it.
C3=$PREFIX-3
run_server "$C3" "$VOL_A" "$PORT" -e COLORSORT_SHUTDOWN_GRACE=1
wait_healthy "$C3"
[ "$(logged_fingerprint "$C3")" = "$FP" ] || fail "$C3 logs another key"
stop_during_upload "$C3" "$PORT" stop-b.bmp "$WORK/stop-b.payload" "$verb" 0
STOP_B_MS=$STOP_MS
reply_b=$STOP_REPLY
snapshot "$VOL_A" "$WORK/snap4"
outcome_b=$(check_in_flight "$LEDGER" "$reply_b" "$(sha "$WORK/stop-b.bmp")" "$class_b" stop-b "$WORK/snap4")
counts=$(verify_snapshot "$WORK/snap4" "$LEDGER")
note "(b) payload stalled, grace 1 s: stop took ${STOP_B_MS} ms, exit 0; upload $outcome_b"
note "$C3 logged: $(log_line "$C3" 'still busy')"

# --- 10. Image size --------------------------------------------------------

IMAGE_BYTES=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
log "10. image size: $IMAGE_BYTES bytes (binary $BINARY_BYTES bytes)"
[ "$IMAGE_BYTES" -lt "$MAX_IMAGE_BYTES" ] || fail "image is $IMAGE_BYTES bytes, limit $MAX_IMAGE_BYTES"

# --- 11. Replicas ----------------------------------------------------------

log "11. two replicas on one fresh volume, $CONCURRENT concurrent uploads (plus $COPIES of one more image)"
new_volume b
VOL_B=$PREFIX-b
R1=$PREFIX-r1
R2=$PREFIX-r2
# Started together, both may generate a key; the store must end with one.
run_server "$R1" "$VOL_B" "" &
BG_PIDS+=("$!")
run_server "$R2" "$VOL_B" ""
wait "${BG_PIDS[0]}" || fail "starting $R1 failed"
BG_PIDS=()
wait_healthy "$R1"
wait_healthy "$R2"
P1=$(host_port "$R1")
P2=$(host_port "$R2")
key1=$(request "$P1" KEY)
[[ $key1 == "OK ssh-rsa "* ]] || fail "KEY from $R1: $key1"
[ "$(request "$P2" KEY)" = "$key1" ] || fail "the replicas present different keys"
[ "$(logged_fingerprint "$R1")" = "$(logged_fingerprint "$R2")" ] || fail "the replicas log different keys"
generated=$( (logs "$R1"; logs "$R2") | grep -c 'generated a' || true)
[ "$generated" = 1 ] || fail "$generated replicas report generating the key"
echo "${key1#OK }" >"$WORK/server-b.pub"

LEDGER_B=$WORK/ledger-b
: >"$LEDGER_B"
: >"$LEDGER_B.dups"
mkdir -p "$WORK/many"
declare -a VERB FOLDER DIGEST PAYLOAD
for ((i = 0; i < CONCURRENT; i++)); do
    case $((i % 3)) in
        0) bmp 200 "$i" 0 >"$WORK/many/$i.bmp"; FOLDER[i]=red ;;
        1) bmp 0 200 "$i" >"$WORK/many/$i.bmp"; FOLDER[i]=green ;;
        2) bmp "$i" 0 200 >"$WORK/many/$i.bmp"; FOLDER[i]=blue ;;
    esac
    [ "$HAVE_AGE" = 1 ] || FOLDER[i]=not_trusted
    DIGEST[i]=$(sha "$WORK/many/$i.bmp")
    PAYLOAD[i]=$WORK/many/$i.payload
    VERB[i]=$(seal "$WORK/many/$i.bmp" "${PAYLOAD[i]}" "$WORK/server-b.pub")
done
# And copies of one image, sealed apart (each sealed file differs): the
# replicas race to store it, and exactly one copy must be kept.
bmp 220 100 100 >"$WORK/many/copy.bmp"
for ((i = CONCURRENT; i < CONCURRENT + COPIES; i++)); do
    FOLDER[i]=red
    [ "$HAVE_AGE" = 1 ] || FOLDER[i]=not_trusted
    DIGEST[i]=$(sha "$WORK/many/copy.bmp")
    PAYLOAD[i]=$WORK/many/$i.payload
    VERB[i]=$(seal "$WORK/many/copy.bmp" "${PAYLOAD[i]}" "$WORK/server-b.pub")
done
ALL=$((CONCURRENT + COPIES))
# Every upload asks for the same name, half to each replica. All the
# connections are open and every payload but its last bytes sent before
# any is completed, so that all of them are in flight at once.
declare -a FD
for ((i = 0; i < ALL; i++)); do
    port=$P1
    [ $((i % 2)) = 0 ] || port=$P2
    exec {fd}<>"/dev/tcp/127.0.0.1/$port"
    FD[i]=$fd
    size=$(file_size "${PAYLOAD[i]}")
    printf '%s clash.bmp %d\n' "${VERB[i]}" "$size" >&"$fd"
    head -c "$((size - 8))" "${PAYLOAD[i]}" >&"$fd"
done
t0=$(now_ms)
for ((i = 0; i < ALL; i++)); do
    tail -c 8 "${PAYLOAD[i]}" >&"${FD[i]}"
done
for ((i = 0; i < ALL; i++)); do
    reply=""
    IFS= read -r -t 30 reply <&"${FD[i]}" || true
    fd=${FD[i]}
    exec {fd}>&-
    record_reply "$LEDGER_B" "${reply%$'\r'}" "${DIGEST[i]}" "${FOLDER[i]}" "upload $i"
done
CONCURRENT_MS=$(($(now_ms) - t0))
for r in "$R1" "$R2"; do
    n=$(logs "$r" | grep -c "SEAL clash.bmp .* -> OK\|PUT clash.bmp .* -> OK" || true)
    [ "$n" = $((ALL / 2)) ] || fail "$r logged $n of the $((ALL / 2)) uploads sent to it"
done
snapshot "$VOL_B" "$WORK/snap-b"
counts_b=$(verify_snapshot "$WORK/snap-b" "$LEDGER_B")
[ "$(wc -l <"$LEDGER_B")" = $((CONCURRENT + 1)) ] || fail "$(wc -l <"$LEDGER_B") files stored, expected $((CONCURRENT + 1))"
copy_sha=$(sha "$WORK/many/copy.bmp")
[ "$(grep -c " $copy_sha " "$LEDGER_B")" = 1 ] || fail "the copies were stored $(grep -c " $copy_sha " "$LEDGER_B") times"
[ "$(grep -c " $copy_sha " "$LEDGER_B.dups" || true)" = $((COPIES - 1)) ] ||
    fail "expected $((COPIES - 1)) of the copies answered as duplicates"
[ "$(request "$P1" STATS)" = "$counts_b" ] || fail "$R1 STATS: $(request "$P1" STATS), volume: $counts_b"
[ "$(request "$P2" STATS)" = "$counts_b" ] || fail "$R2 STATS: $(request "$P2" STATS), volume: $counts_b"
[ "$(cat "$WORK/snap-b/data/key.pub")" = "${key1#OK }" ] || fail "key.pub on the volume is not the key served"
note "$ALL acknowledged in ${CONCURRENT_MS} ms: $(wc -l <"$LEDGER_B") files under as many distinct names, all present" \
    "and identical ($counts_b); the $COPIES copies stored once, $((COPIES - 1)) answered as duplicates; one key, generated once"
$DOCKER stop "$R1" "$R2" >/dev/null

# --- 12. A small container -------------------------------------------------

log "12. a --memory $SMALL_MEMORY container, $BIG_UPLOADS concurrent uploads of $BIG_SIDE x $BIG_SIDE BMPs"
# No swap either: past its limit the container's only way out is the OOM
# killer, unless the server's memory budget fits the limit.
SMALL=$PREFIX-small
run_server "$SMALL" "$VOL_B" "" --memory "$SMALL_MEMORY" --memory-swap "$SMALL_MEMORY"
wait_healthy "$SMALL"
PS=$(host_port "$SMALL")
budget_line=$(log_line "$SMALL" 'memory budget')
[[ $budget_line == *"fitted to the cgroup memory limit of 256M"* ]] ||
    fail "$SMALL did not fit its memory budget to the container: ${budget_line:-no memory budget in the log}"
mkdir -p "$WORK/big"
for ((i = 0; i <= BIG_UPLOADS; i++)); do
    big_bmp "$BIG_SIDE" >"$WORK/big/$i.bmp"
done
t0=$(now_ms)
for ((i = 0; i < BIG_UPLOADS; i++)); do
    upload "$PS" PUT "big-$i.bmp" "$WORK/big/$i.bmp" >"$WORK/big/$i.reply" &
    BG_PIDS+=("$!")
done
for pid in "${BG_PIDS[@]}"; do
    wait "$pid" || true
done
BG_PIDS=()
BIG_MS=$(($(now_ms) - t0))
state=$($DOCKER inspect -f '{{.State.Running}} {{.State.OOMKilled}}' "$SMALL")
[ "$state" = "true false" ] || fail "$SMALL: running, OOM-killed = $state"
big_ok=0 big_busy=0
for ((i = 0; i < BIG_UPLOADS; i++)); do
    reply=$(cat "$WORK/big/$i.reply")
    case $reply in
        "OK not_trusted/"*) big_ok=$((big_ok + 1)) ;;
        "ERR busy "*) big_busy=$((big_busy + 1)) ;;
        *) fail "big upload $i: ${reply:-no reply}" ;;
    esac
done
[ "$big_ok" -ge 1 ] || fail "none of the $BIG_UPLOADS big uploads was stored"
# What the concurrent ones held is given back: one more upload is stored.
reply=$(upload "$PS" PUT "big-$BIG_UPLOADS.bmp" "$WORK/big/$BIG_UPLOADS.bmp")
[[ $reply == "OK not_trusted/"* ]] || fail "a big upload after the others: ${reply:-no reply}"
state=$($DOCKER inspect -f '{{.State.Running}} {{.State.OOMKilled}}' "$SMALL")
[ "$state" = "true false" ] || fail "$SMALL: running, OOM-killed = $state"
SMALL_PEAK=$(container_peak "$SMALL")
note "${budget_line#*memory budget }"
note "$big_ok stored and $big_busy answered ERR busy in $BIG_MS ms, then one more stored;" \
    "still running, not OOM-killed; peak memory $SMALL_PEAK of $SMALL_MEMORY"
$DOCKER stop "$SMALL" >/dev/null

# --- 13. Decoder bombs in a container ---------------------------------------

log "13. a --memory $BOMB_MEMORY container, $BOMBS decoder bombs at once, three times each"
BOMB=$PREFIX-bomb
run_server "$BOMB" "$VOL_B" "" --memory "$BOMB_MEMORY" --memory-swap "$BOMB_MEMORY"
wait_healthy "$BOMB"
PB=$(host_port "$BOMB")
mkdir -p "$WORK/bombs"
bomb_files=("$ROOT/test-data/bombs/fail_prefix_groups.webp" "$IMAGES_DIR/fail_tag_lists.tiff")
for ((i = 0; i < BOMBS; i++)); do
    file=${bomb_files[$((i % 2))]}
    (
        for round in 1 2 3; do
            upload "$PB" PUT "bomb-$i-$round.${file##*.}" "$file"
        done
    ) >"$WORK/bombs/$i.replies" &
    BG_PIDS+=("$!")
done
bmp 10 200 10 >"$WORK/bombs/legit.bmp"
t0=$(now_ms)
legit=$(upload "$PB" PUT legit.bmp "$WORK/bombs/legit.bmp")
LEGIT_MS=$(($(now_ms) - t0))
for pid in "${BG_PIDS[@]}"; do
    wait "$pid" || true
done
BG_PIDS=()
[[ $legit == "OK not_trusted/legit.bmp "* ]] || fail "a legitimate upload during the bombs: ${legit:-no reply}"
[ "$LEGIT_MS" -lt 2000 ] || fail "a legitimate upload during the bombs took $LEGIT_MS ms"
bomb_replies=$(cat "$WORK"/bombs/*.replies)
[ "$(grep -c . <<<"$bomb_replies")" = $((BOMBS * 3)) ] || fail "bomb replies: $bomb_replies"
if grep -v -e '^ERR too-complex ' -e '^ERR busy ' <<<"$bomb_replies"; then
    fail "a bomb got another reply"
fi
state=$($DOCKER inspect -f '{{.State.Running}} {{.State.OOMKilled}}' "$BOMB")
[ "$state" = "true false" ] || fail "$BOMB: running, OOM-killed = $state"
has_log "$BOMB" 'ran into its memory limit' || fail "$BOMB: no worker ran into its memory limit"
BOMB_PEAK=$(container_peak "$BOMB")
note "$((BOMBS * 3)) bombs: $(grep -c '^ERR too-complex' <<<"$bomb_replies" || true) too-complex," \
    "$(grep -c '^ERR busy' <<<"$bomb_replies" || true) busy; a legitimate upload stored in $LEGIT_MS ms;" \
    "not OOM-killed; peak memory $BOMB_PEAK of $BOMB_MEMORY"
$DOCKER stop "$BOMB" >/dev/null

# --- Summary ---------------------------------------------------------------

TOTAL=$(cat "$LEDGER" "$LEDGER.dups" "$LEDGER_B" "$LEDGER_B.dups" | wc -l)
echo
echo "docker test passed in $(($(date +%s) - STARTED))s"
echo "  image:    $IMAGE_BYTES bytes (limit $MAX_IMAGE_BYTES), static binary $BINARY_BYTES bytes"
echo "  stop:     ${STOP_A_MS} ms with an upload completed after SIGTERM, ${STOP_B_MS} ms with one stalled (limit ${MAX_STOP_MS} ms)"
echo "  uploads:  $TOTAL acknowledged and checked against the volume: $UPLOADS_CLIENT by colorsort send," \
    "$UPLOADS_AGE sealed by age, $ALL concurrent on two replicas$([[ $reply_a == "OK "* ]] && echo ', 1 during docker stop')"
echo "  memory:   --memory $SMALL_MEMORY, $BIG_UPLOADS concurrent ${BIG_SIDE}x$BIG_SIDE uploads: $big_ok stored, $big_busy busy, peak $SMALL_PEAK, not OOM-killed"
echo "  bombs:    --memory $BOMB_MEMORY, $((BOMBS * 3)) decoder bombs: peak $BOMB_PEAK, not OOM-killed, a legitimate upload in $LEGIT_MS ms"

# shellcheck shell=bash
# What the shell scripts say and how they wait, in one place: progress and
# failure lines, a skip that fails where every tool must be present
# (COLORSORT_REQUIRE_TOOLS), a command line shown as `sh -x` shows it,
# whether a Rust target is installed, milliseconds without a fork, polling
# with a deadline, and the header of a one-pixel BMP. Sourced by the tests
# (tests/docker-test.sh, tests/swarm-test.sh, scripts/gluster-test.sh) and
# by the scripts behind the Makefile's targets; those that skip set
# TEST_NAME first.

log() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# skip WHY: the test cannot run here; a failure when COLORSORT_REQUIRE_TOOLS
# is set.
skip() {
    [ -z "${COLORSORT_REQUIRE_TOOLS:-}" ] || fail "$TEST_NAME cannot run: $1 (COLORSORT_REQUIRE_TOOLS is set)"
    echo "SKIPPED: $TEST_NAME ($1)"
    exit 0
}

# show WORD...: prints the command line WORD... on stderr as `sh -x` does
# (words without quotes or spaces), before a target runs it.
show() { printf '+ %s\n' "$*" >&2; }

# rust_target_installed TARGET: whether the standard library for the Rust
# target TARGET is installed in the active toolchain.
rust_target_installed() {
    [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ]
}

# Milliseconds since the epoch, without a fork.
now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((t / 1000))
}

# The bytes of a 1x1 24-bit BMP but its pixel, as printf %b escapes: the
# header fields as value:width, little-endian.
BMP_HEAD='BM'
for field in 58:4 0:4 54:4 40:4 1:4 1:4 1:2 24:2 0:4 4:4 2835:4 2835:4 0:4 0:4; do
    value=${field%:*} width=${field#*:}
    for ((k = 0; k < width; k++)); do
        BMP_HEAD+=$(printf '\\x%02x' $(((value >> (8 * k)) & 255)))
    done
done

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every POLL_SECONDS
# (a quarter second unless set) until it succeeds, failing after SECONDS.
wait_until() {
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$(($(now_ms) + seconds * 1000))
    until "$@"; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "$what: not after ${seconds}s"
        sleep "${POLL_SECONDS:-0.25}"
    done
}

#!/usr/bin/env bash
# `make test`: runs `make test-steps` (each step in turn, stopping at the
# first failure), keeping its output in TEST_LOG, then lists the tests that
# could not run and adds up cargo's counts, and exits as the steps did.
#
# A test that could not run says SKIPPED: the shell tests on their output,
# cargo's tests (whose output libtest hides when they pass) in SKIP_LOG,
# which they find through COLORSORT_SKIP_LOG. Called by the Makefile with
# MAKE, TEST_LOG and SKIP_LOG (an absolute path) set.
set -euo pipefail

: "${MAKE:?}" "${TEST_LOG:?}" "${SKIP_LOG:?}"

mkdir -p target
rm -f "$SKIP_LOG"

rc=0
COLORSORT_SKIP_LOG=$SKIP_LOG $MAKE --no-print-directory test-steps 2>&1 | tee "$TEST_LOG" ||
    rc=${PIPESTATUS[0]}

skipped=$({
    grep -E '(^|[^A-Za-z])SKIPPED' "$TEST_LOG" | grep -v '^make' | sed 's/^==> //'
    cat "$SKIP_LOG" 2>/dev/null
} | sort -u || true)
nskipped=$(printf '%s' "$skipped" | grep -c . || true)
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { printf "%d %d\n", p, f }' "$TEST_LOG")

echo
if [ -n "$skipped" ]; then
    echo "skipped $nskipped:"
    printf '%s\n' "$skipped" | sed 's/^/  /'
else
    echo "skipped: none"
fi
if [ "$rc" = 0 ]; then
    echo "make test: all steps passed (log: $TEST_LOG)"
else
    echo "make test: FAILED (log: $TEST_LOG)"
fi
echo "cargo tests: $passed passed, $failed failed, $nskipped skipped"
exit "$rc"

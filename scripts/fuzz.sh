#!/usr/bin/env bash
# `make fuzz`: runs each cargo-fuzz target in FUZZ_TARGETS for FUZZ_SECONDS
# on the nightly toolchain, with the libFuzzer options FUZZ_FLAGS, installing
# cargo-fuzz first if it is missing. The committed seeds in fuzz/corpus/
# are only read; new inputs go to fuzz/target/corpus/ and crashes to
# fuzz/artifacts/. Called by the Makefile with CARGO, FUZZ_TARGETS,
# FUZZ_SECONDS and FUZZ_FLAGS set.
set -euo pipefail

: "${CARGO:?}" "${FUZZ_TARGETS:?}" "${FUZZ_SECONDS:?}" "${FUZZ_FLAGS?}"
read -ra targets <<<"$FUZZ_TARGETS"
read -ra flags <<<"$FUZZ_FLAGS"

command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "installing cargo-fuzz"
    $CARGO install --locked cargo-fuzz
}
# Read whole before it is searched: `grep -q` leaving the pipe early would
# fail the pipeline.
toolchains=$(rustup toolchain list 2>/dev/null || true)
grep -q '^nightly' <<<"$toolchains" || {
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
}
for t in "${targets[@]}"; do
    mkdir -p "fuzz/target/corpus/$t"
    echo "fuzzing $t for ${FUZZ_SECONDS}s"
    $CARGO +nightly fuzz run "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
        "-max_total_time=$FUZZ_SECONDS" "${flags[@]}" -print_final_stats=1
done

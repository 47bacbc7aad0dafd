#!/usr/bin/env bash
# `make bench`, once the native and static glibc servers are built and the
# images and anchors are in BENCH_DIR: builds the static musl server twice,
# with the crate's own memcpy and with musl's (--features libc-mem, copied
# to BENCH_DIR), where the musl target is installed or rustup can add it;
# builds the image with docker-build where a Docker engine answers; then
# runs the benchmarks (benches/bench/) on all of them into
# docs/BENCHMARKS.md, with BENCH_FLAGS added. Called by the Makefile with
# CARGO, MAKE, DOCKER, IMAGE, STATIC_TARGET, GLIBC_TARGET, BENCH_DIR and
# BENCH_FLAGS set.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

: "${CARGO:?}" "${MAKE:?}" "${DOCKER:?}" "${IMAGE:?}" "${STATIC_TARGET:?}" "${GLIBC_TARGET:?}"
: "${BENCH_DIR:?}" "${BENCH_FLAGS?}"
read -ra flags <<<"$BENCH_FLAGS"

musl=()
if rust_target_installed "$STATIC_TARGET" ||
    { command -v rustup >/dev/null 2>&1 && rustup target add "$STATIC_TARGET" >/dev/null 2>&1; }; then
    $CARGO build --release --target "$STATIC_TARGET" --features libc-mem
    cp "target/$STATIC_TARGET/release/colorsort" "$BENCH_DIR/colorsort-musl-libc-mem"
    $CARGO build --release --target "$STATIC_TARGET"
    musl=(--musl "target/$STATIC_TARGET/release/colorsort" --musl-libc-mem "$BENCH_DIR/colorsort-musl-libc-mem")
else
    echo "Rust target $STATIC_TARGET not available: no musl comparison"
fi

image=()
if $DOCKER info >/dev/null 2>&1; then
    $MAKE --no-print-directory docker-build
    image=(--image "$IMAGE:latest")
elif [ -n "${COLORSORT_REQUIRE_TOOLS:-}" ]; then
    echo "container rows cannot run: no Docker engine reachable (COLORSORT_REQUIRE_TOOLS is set)" >&2
    exit 1
else
    echo "SKIPPED: container rows (no Docker engine reachable)"
fi

$CARGO bench --bench bench -- --assets "$BENCH_DIR/assets" --anchors "$BENCH_DIR/anchors.tsv" \
    --work "$BENCH_DIR/work" --server target/release/colorsort "${musl[@]}" "${image[@]}" \
    --static-glibc "target/$GLIBC_TARGET/release/colorsort" --out docs/BENCHMARKS.md "${flags[@]}"

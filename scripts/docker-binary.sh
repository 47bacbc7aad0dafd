#!/usr/bin/env bash
# `make docker-binary`: builds the static binary for the image, musl (the
# default) or, with LIBC=glibc, glibc with +crt-static; checks that it has
# no program interpreter and needs no shared library; and stages it with an
# empty data folder in DOCKER_ROOT: the binary as DOCKER_ROOT/colorsort,
# and under DOCKER_ROOT/owned/ what the Dockerfile copies to / with the
# service user as owner. Without the musl target, and no rustup able to
# add it, it fails rather than build something else. Called by the
# Makefile with CARGO, LIBC, STATIC_TARGET, GLIBC_TARGET and DOCKER_ROOT
# set.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

: "${CARGO:?}" "${LIBC:?}" "${STATIC_TARGET:?}" "${GLIBC_TARGET:?}" "${DOCKER_ROOT:?}"

case "$LIBC" in
    musl)
        target=$STATIC_TARGET
        if ! rust_target_installed "$target"; then
            if ! command -v rustup >/dev/null 2>&1; then
                echo "cannot build the static musl binary: the Rust target $target is not installed," >&2
                echo "and rustup, which installs it, is not on the PATH; with rustup: rustup target add $target" >&2
                exit 1
            fi
            echo "Rust target $target is not installed; trying: rustup target add $target"
            if ! rustup target add "$target"; then
                echo "cannot build the static musl binary: the Rust target $target is not installed," >&2
                echo "and rustup target add $target failed (above); install it with: rustup target add $target" >&2
                exit 1
            fi
        fi
        $CARGO build --release --target "$target"
        build="musl ($target)"
        ;;
    glibc)
        target=$GLIBC_TARGET
        RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" $CARGO build --release --target "$target"
        build="static glibc ($target, -C target-feature=+crt-static)"
        ;;
    *)
        echo "LIBC must be musl or glibc, not $LIBC" >&2
        exit 2
        ;;
esac

# Read whole before they are searched: `grep -q` leaving a pipe early would
# fail the pipeline, and with it the check.
bin=target/$target/release/colorsort
if command -v readelf >/dev/null 2>&1; then
    headers=$(readelf -lW "$bin")
    if grep -q 'INTERP' <<<"$headers"; then
        echo "$bin has a program interpreter: not static" >&2
        exit 1
    fi
    dynamic=$(readelf -dW "$bin")
    if grep -q '(NEEDED)' <<<"$dynamic"; then
        echo "$bin needs shared libraries: not static" >&2
        exit 1
    fi
elif command -v file >/dev/null 2>&1; then
    kind=$(file -b "$bin")
    if ! grep -Eq 'static(-pie)? linked|statically linked' <<<"$kind"; then
        echo "$bin is not static: $kind" >&2
        exit 1
    fi
else
    echo "neither readelf nor file is installed: cannot check that $bin is static" >&2
    exit 1
fi

rm -rf "$DOCKER_ROOT"
mkdir -p "$DOCKER_ROOT/owned/data"
chmod 0700 "$DOCKER_ROOT/owned/data"
cp "$bin" "$DOCKER_ROOT/colorsort"
echo "static binary: $build, $(wc -c <"$DOCKER_ROOT/colorsort") bytes, no interpreter, no shared libraries"
if command -v file >/dev/null 2>&1; then file -b "$DOCKER_ROOT/colorsort"; fi

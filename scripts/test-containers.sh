#!/usr/bin/env bash
# The container steps of `make test`: the Docker test, then the Swarm test,
# when a Docker engine answers; otherwise both say SKIPPED, or fail where
# every tool must be present (COLORSORT_REQUIRE_TOOLS). Called by the
# Makefile with MAKE and DOCKER set.
set -euo pipefail

: "${MAKE:?}" "${DOCKER:?}"

if $DOCKER info >/dev/null 2>&1; then
    $MAKE --no-print-directory docker-test
    $MAKE --no-print-directory swarm-test
elif [ -n "${COLORSORT_REQUIRE_TOOLS:-}" ]; then
    echo "docker and swarm tests cannot run: no Docker engine reachable (COLORSORT_REQUIRE_TOOLS is set)" >&2
    exit 1
else
    echo "SKIPPED: docker test (no Docker engine reachable)"
    echo "SKIPPED: swarm test (no Docker engine reachable)"
fi

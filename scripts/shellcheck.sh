#!/usr/bin/env bash
# `make lint`'s shell step: every script in scripts/ and tests/ passes
# `shellcheck -x` (following what it sources). Without shellcheck it says
# SKIPPED, and fails where every tool must be present
# (COLORSORT_REQUIRE_TOOLS). Run from the top of the tree.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
TEST_NAME=shellcheck

command -v shellcheck >/dev/null 2>&1 || skip "shellcheck is not installed"
scripts=(scripts/*.sh tests/*.sh)
shellcheck -x "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts ok"

# colorsort: make run | make test | make bench | make fuzz | make docker-run
# `make help` lists every target.

CARGO ?= cargo
DATA ?= ./data
LISTEN ?= 127.0.0.1:6666

.PHONY: help build release run test lint doc clean
.PHONY: docker-binary docker-build docker-run docker-stop docker-test
.PHONY: swarm-up swarm-down swarm-test k8s-validate gluster-test

help:
	@echo "make run           run the server natively on $(LISTEN) with $(DATA)"
	@echo "make test          unit and integration tests, make doc, the Docker, Swarm and GlusterFS tests when they can run, the Kubernetes validation"
	@echo "make lint          rustfmt, clippy, shellcheck and make doc"
	@echo "make doc           the API documentation, private items included, in target/doc/; fails on any rustdoc warning"
	@echo "make fuzz          each fuzz target for FUZZ_SECONDS (default 60) on nightly (docs/FUZZING.md)"
	@echo "make release       optimised native build in target/release/"
	@echo "make bench         speed and memory benchmarks (release builds) into docs/BENCHMARKS.md"
	@echo "make docker-binary static binary for the image, in $(DOCKER_ROOT)/"
	@echo "make docker-build  build the image $(IMAGE):latest and $(IMAGE):$(VERSION)"
	@echo "make docker-run    run it detached as '$(CONTAINER)' on port $(DOCKER_PORT), data in volume '$(VOLUME)'"
	@echo "make docker-stop   stop and remove the container '$(CONTAINER)' (the volume stays)"
	@echo "make docker-test   end-to-end test of the image (tests/docker-test.sh)"
	@echo "make swarm-up      deploy the stack '$(STACK)' (deploy/swarm.yaml) on this node's swarm, creating one if needed"
	@echo "make swarm-down    remove the stack '$(STACK)' (the volume stays); leave the swarm if swarm-up created it"
	@echo "make swarm-test    the stack under rolling updates, kills and scaling (tests/swarm-test.sh)"
	@echo "make k8s-validate  render deploy/kubernetes and validate it against the Kubernetes schemas"
	@echo "make gluster-test  two servers and the Swarm stack on a GlusterFS replica-3 volume, under faults (root, /dev/fuse)"

build:
	$(CARGO) build

release:
	$(CARGO) build --release

run: release
	./target/release/colorsort serve --listen $(LISTEN) --data $(DATA)

# Each step in turn, stopping at the first failure; the output is kept in
# $(TEST_LOG). Tests that could not run say SKIPPED: the shell tests on
# their output, cargo's tests (whose output libtest hides when they pass)
# in $(SKIP_LOG). Both are listed at the end, under one closing line that
# adds up cargo's counts (scripts/test.sh). With COLORSORT_REQUIRE_TOOLS
# set, as CI sets it, a test that cannot run fails instead.
TEST_LOG := target/test.log
SKIP_LOG := $(CURDIR)/target/test-skips.log

test:
	@MAKE='$(MAKE)' TEST_LOG='$(TEST_LOG)' SKIP_LOG='$(SKIP_LOG)' bash scripts/test.sh

.PHONY: test-steps
test-steps:
	$(CARGO) test --all-targets
	@$(MAKE) --no-print-directory doc
	@bash scripts/shellcheck.sh
	@MAKE='$(MAKE)' DOCKER='$(DOCKER)' bash scripts/test-containers.sh
	@$(MAKE) --no-print-directory gluster-test
	@$(MAKE) --no-print-directory k8s-validate

lint: doc
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	@bash scripts/shellcheck.sh

# The API documentation, private items included; a broken link or any
# other rustdoc warning fails it.
doc:
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --no-deps --document-private-items

clean:
	$(CARGO) clean

# --- Container image -------------------------------------------------------
#
# The image is FROM scratch: a static binary and an empty /data owned by the
# service user, both prepared here in $(DOCKER_ROOT) (the only part of the
# tree the build context lets through, see .dockerignore): the binary as
# $(DOCKER_ROOT)/colorsort, and under $(DOCKER_ROOT)/owned/ what the
# Dockerfile copies to / with the service user as owner.

DOCKER ?= docker
IMAGE ?= colorsort
# The version in Cargo.toml's [package] section.
VERSION := $(shell awk -F'"' '/^\[/ { p = ($$0 == "[package]") } p && /^version *=/ { print $$2; exit }' Cargo.toml)
DOCKER_TAGS ?= $(IMAGE):latest $(IMAGE):$(VERSION)
CONTAINER ?= colorsort
VOLUME ?= colorsort-data
DOCKER_PORT ?= 6666
DOCKER_ROOT := target/docker-root
STATIC_TARGET ?= x86_64-unknown-linux-musl
GLIBC_TARGET := x86_64-unknown-linux-gnu
# musl (the default, with the crate's own memcpy/memmove/memset: as fast as
# glibc, see docs/BENCHMARKS.md), or glibc for a static glibc build, which
# cannot resolve host names, so client commands in the container then take
# numeric addresses only.
LIBC ?= musl
HARDENING := --read-only --cap-drop ALL --security-opt no-new-privileges

# Builds a static binary: musl, whose target must be installed or added by
# rustup (it fails otherwise, saying so), or with LIBC=glibc, glibc with
# +crt-static. Either way the result is checked for an interpreter or
# shared libraries before it is staged with an empty data folder in
# $(DOCKER_ROOT) (scripts/docker-binary.sh).
docker-binary:
	@CARGO='$(CARGO)' LIBC='$(LIBC)' STATIC_TARGET='$(STATIC_TARGET)' GLIBC_TARGET='$(GLIBC_TARGET)' \
		DOCKER_ROOT='$(DOCKER_ROOT)' bash scripts/docker-binary.sh

docker-build: docker-binary
	$(DOCKER) build --build-arg VERSION=$(VERSION) $(addprefix -t ,$(DOCKER_TAGS)) .

# Replaces a container left by an earlier run; the volume, and with it the
# key and the stored files, is kept (scripts/docker-run.sh).
docker-run: docker-build
	@DOCKER='$(DOCKER)' IMAGE='$(IMAGE)' VERSION='$(VERSION)' CONTAINER='$(CONTAINER)' VOLUME='$(VOLUME)' \
		DOCKER_PORT='$(DOCKER_PORT)' HARDENING='$(HARDENING)' bash scripts/docker-run.sh

docker-stop:
	@DOCKER='$(DOCKER)' CONTAINER='$(CONTAINER)' VOLUME='$(VOLUME)' bash scripts/docker-stop.sh

docker-test:
	bash tests/docker-test.sh

# --- Docker Swarm ----------------------------------------------------------
#
# The stack in deploy/swarm.yaml (see deploy/README.md), deployed as
# $(STACK) on the swarm this engine belongs to. With no swarm active,
# swarm-up makes this node a single-node swarm and notes it in
# $(SWARM_MARKER), so that swarm-down leaves only a swarm it created.
# COLORSORT_ENDPOINT_MODE=dnsrr for kernels without IPVS (no VIP, no
# routing mesh: the service is then reached from the network $(STACK)_net).
# The targets run scripts/swarm-up.sh and scripts/swarm-down.sh.
STACK ?= colorsort
COLORSORT_REPLICAS ?= 3
COLORSORT_ENDPOINT_MODE ?= vip
COLORSORT_PORT ?= 6666
SWARM_WAIT ?= 180
SWARM_MARKER := target/swarm-created-by-make

swarm-up: docker-build
	@DOCKER='$(DOCKER)' IMAGE='$(IMAGE)' STACK='$(STACK)' COLORSORT_REPLICAS='$(COLORSORT_REPLICAS)' \
		COLORSORT_ENDPOINT_MODE='$(COLORSORT_ENDPOINT_MODE)' COLORSORT_PORT='$(COLORSORT_PORT)' \
		SWARM_WAIT='$(SWARM_WAIT)' SWARM_MARKER='$(SWARM_MARKER)' DOCKER_ROOT='$(DOCKER_ROOT)' bash scripts/swarm-up.sh

swarm-down:
	@DOCKER='$(DOCKER)' STACK='$(STACK)' SWARM_MARKER='$(SWARM_MARKER)' bash scripts/swarm-down.sh

swarm-test:
	bash tests/swarm-test.sh

# --- GlusterFS -------------------------------------------------------------
#
# Replicas on a replica-3 GlusterFS volume mounted twice, under brick,
# quorum and server faults (scripts/gluster-test.sh); SKIPPED unless run as
# root with /dev/fuse, GlusterFS and a Docker engine.
gluster-test:
	bash scripts/gluster-test.sh

# --- Kubernetes ------------------------------------------------------------

k8s-validate:
	bash tests/kubernetes-validate.sh

# --- Fuzzing ---------------------------------------------------------------
#
# The cargo-fuzz targets in fuzz/ (docs/FUZZING.md), on the nightly
# toolchain, one after the other, FUZZ_SECONDS each. The committed seeds in
# fuzz/corpus/ are only read; new inputs go to fuzz/target/corpus/ and
# crashes to fuzz/artifacts/, neither committed (scripts/fuzz.sh).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= request_line age_decrypt classify sshsig allowed_signers
FUZZ_FLAGS ?= -rss_limit_mb=4096 -timeout=20

.PHONY: fuzz
fuzz:
	@CARGO='$(CARGO)' FUZZ_TARGETS='$(FUZZ_TARGETS)' FUZZ_SECONDS='$(FUZZ_SECONDS)' FUZZ_FLAGS='$(FUZZ_FLAGS)' \
		bash scripts/fuzz.sh

# --- Benchmarks ------------------------------------------------------------
#
# Speed and memory measurements (benches/bench/), written to
# docs/BENCHMARKS.md; not part of `make test`. The images are generated
# into $(BENCH_DIR)/assets from the sample photos in the scikit-image wheel
# (downloaded, not installed), with Pillow and numpy in a virtualenv there,
# beside colorthief for the Python anchors. The static musl binary is
# compared when its target is installed, with a static glibc build, the
# same musl build with musl's own memcpy (--features libc-mem, copied to
# $(BENCH_DIR)/) and, when a Docker engine is up, the image itself (built
# here by docker-build) beside it (scripts/bench.sh).
BENCH_DIR := target/bench
BENCH_PY := $(BENCH_DIR)/venv/bin/python
BENCH_FLAGS ?=

.PHONY: bench
bench: $(BENCH_DIR)/assets/.done $(BENCH_DIR)/anchors.tsv
	$(CARGO) build --release
	RUSTFLAGS="$${RUSTFLAGS:-} -C target-feature=+crt-static" $(CARGO) build --release --target $(GLIBC_TARGET)
	@CARGO='$(CARGO)' MAKE='$(MAKE)' DOCKER='$(DOCKER)' IMAGE='$(IMAGE)' STATIC_TARGET='$(STATIC_TARGET)' \
		GLIBC_TARGET='$(GLIBC_TARGET)' BENCH_DIR='$(BENCH_DIR)' BENCH_FLAGS='$(BENCH_FLAGS)' bash scripts/bench.sh

$(BENCH_PY):
	python3 -m venv $(BENCH_DIR)/venv
	$(BENCH_PY) -m pip install -q --disable-pip-version-check pillow numpy colorthief

$(BENCH_DIR)/assets/.done: benches/make-assets.py | $(BENCH_PY)
	$(BENCH_PY) -m pip download -q --disable-pip-version-check --no-deps scikit-image==0.26.0 -d $(BENCH_DIR)/wheel
	$(BENCH_PY) benches/make-assets.py --wheel $(BENCH_DIR)/wheel/scikit_image-0.26.0-*.whl --out $(BENCH_DIR)/assets
	touch $@

$(BENCH_DIR)/anchors.tsv: benches/anchors.py $(BENCH_DIR)/assets/.done
	$(BENCH_PY) benches/anchors.py --assets $(BENCH_DIR)/assets --out $@

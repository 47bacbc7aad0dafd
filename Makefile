# colorsort: make run | make test | make bench | make fuzz | make docker-run
# `make help` lists every target.

CARGO ?= cargo
DATA ?= ./data
LISTEN ?= 127.0.0.1:6666

.PHONY: help build release run test unit lint clean
.PHONY: docker-binary docker-build docker-run docker-stop docker-test

help:
	@echo "make run           run the server natively on $(LISTEN) with $(DATA)"
	@echo "make test          unit and integration tests (and the Docker test when Docker is up)"
	@echo "make lint          rustfmt and clippy"
	@echo "make fuzz          each fuzz target for FUZZ_SECONDS (default 60) on nightly (docs/FUZZING.md)"
	@echo "make release       optimised native build in target/release/"
	@echo "make bench         speed and memory benchmarks (release builds) into docs/BENCHMARKS.md"
	@echo "make docker-binary static binary for the image, in $(DOCKER_ROOT)/"
	@echo "make docker-build  build the image $(IMAGE):latest and $(IMAGE):$(VERSION)"
	@echo "make docker-run    run it detached as '$(CONTAINER)' on port $(DOCKER_PORT), data in volume '$(VOLUME)'"
	@echo "make docker-stop   stop and remove the container '$(CONTAINER)' (the volume stays)"
	@echo "make docker-test   end-to-end test of the image (tests/docker-test.sh)"

build:
	$(CARGO) build

release:
	$(CARGO) build --release

run: release
	./target/release/colorsort serve --listen $(LISTEN) --data $(DATA)

test:
	$(CARGO) test --all-targets
	@if $(DOCKER) info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory docker-test; \
	elif [ -n "$${COLORSORT_REQUIRE_TOOLS:-}" ]; then \
		echo "docker test cannot run: no Docker engine reachable (COLORSORT_REQUIRE_TOOLS is set)" >&2; exit 1; \
	else \
		echo "SKIPPED: docker test (no Docker engine reachable)"; \
	fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

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
# musl, or glibc for a static glibc build: about 1.45x faster on baseline
# JPEG (musl's memcpy is slow on the decoder's small copies, see
# docs/BENCHMARKS.md), but a static glibc cannot resolve host names, so
# client commands in the container then take numeric addresses only.
LIBC ?= musl
HARDENING := --read-only --cap-drop ALL --security-opt no-new-privileges

# Builds a static binary: musl if the target is installed or rustup can add
# it, otherwise (or with LIBC=glibc) glibc with +crt-static. Either way the
# result is checked for an interpreter or shared libraries before it is
# staged with an empty data folder in $(DOCKER_ROOT).
docker-binary:
	@set -eu; \
	case "$(LIBC)" in musl) target=$(STATIC_TARGET) ;; glibc) target="" ;; \
		*) echo "LIBC must be musl or glibc, not $(LIBC)" >&2; exit 2 ;; esac; \
	sysroot=$$(rustc --print sysroot); \
	if [ -n "$$target" ] && [ ! -d "$$sysroot/lib/rustlib/$$target/lib" ]; then \
		echo "Rust target $$target is not installed; trying: rustup target add $$target"; \
		if ! { command -v rustup >/dev/null 2>&1 && rustup target add "$$target"; }; then \
			echo "cannot install $$target; falling back to a static glibc build"; \
			target=""; \
		fi; \
	fi; \
	if [ -n "$$target" ]; then \
		$(CARGO) build --release --target "$$target"; \
		build="musl ($$target)"; \
	else \
		target=$(GLIBC_TARGET); \
		RUSTFLAGS="$${RUSTFLAGS:-} -C target-feature=+crt-static" $(CARGO) build --release --target "$$target"; \
		build="static glibc ($$target, -C target-feature=+crt-static)"; \
	fi; \
	bin=target/$$target/release/colorsort; \
	if command -v readelf >/dev/null 2>&1; then \
		if readelf -lW "$$bin" | grep -q 'INTERP'; then echo "$$bin has a program interpreter: not static" >&2; exit 1; fi; \
		if readelf -dW "$$bin" | grep -q '(NEEDED)'; then echo "$$bin needs shared libraries: not static" >&2; exit 1; fi; \
	elif command -v file >/dev/null 2>&1; then \
		file -b "$$bin" | grep -Eq 'static(-pie)? linked|statically linked' || { echo "$$bin is not static: $$(file -b "$$bin")" >&2; exit 1; }; \
	else \
		echo "neither readelf nor file is installed: cannot check that $$bin is static" >&2; exit 1; \
	fi; \
	rm -rf $(DOCKER_ROOT); \
	mkdir -p $(DOCKER_ROOT)/owned/data; \
	chmod 0700 $(DOCKER_ROOT)/owned/data; \
	cp "$$bin" $(DOCKER_ROOT)/colorsort; \
	echo "static binary: $$build, $$(wc -c < $(DOCKER_ROOT)/colorsort) bytes, no interpreter, no shared libraries"; \
	if command -v file >/dev/null 2>&1; then file -b $(DOCKER_ROOT)/colorsort; fi

docker-build: docker-binary
	$(DOCKER) build --build-arg VERSION=$(VERSION) $(addprefix -t ,$(DOCKER_TAGS)) .

# Replaces a container left by an earlier run; the volume, and with it the
# key and the stored files, is kept.
docker-run: docker-build
	@set -eu; \
	if ! $(DOCKER) volume inspect $(VOLUME) >/dev/null 2>&1; then \
		$(DOCKER) volume create $(VOLUME) >/dev/null; \
		echo "created volume $(VOLUME)"; \
	fi; \
	if $(DOCKER) container inspect $(CONTAINER) >/dev/null 2>&1; then \
		echo "a container named $(CONTAINER) exists: stopping and replacing it (the volume is kept)"; \
		$(DOCKER) stop $(CONTAINER) >/dev/null; \
		$(DOCKER) rm $(CONTAINER) >/dev/null; \
	fi; \
	set -x; \
	$(DOCKER) run -d --name $(CONTAINER) --restart unless-stopped \
		-p $(DOCKER_PORT):6666 -v $(VOLUME):/data $(HARDENING) \
		$(IMAGE):$(VERSION) >/dev/null; \
	{ set +x; } 2>/dev/null; \
	printf 'waiting for the server'; \
	for i in $$(seq 60); do \
		if $(DOCKER) exec $(CONTAINER) /colorsort ping >/dev/null 2>&1; then break; fi; \
		if [ "$$($(DOCKER) inspect -f '{{.State.Running}}' $(CONTAINER))" != true ]; then \
			echo; echo "the container stopped; its log:"; $(DOCKER) logs $(CONTAINER); exit 1; \
		fi; \
		printf '.'; sleep 1; \
	done; \
	echo; \
	$(DOCKER) exec $(CONTAINER) /colorsort ping >/dev/null || { echo "no answer after 60 s; see: $(DOCKER) logs $(CONTAINER)"; exit 1; }; \
	echo "$(CONTAINER) ($(IMAGE):$(VERSION)) is up on port $(DOCKER_PORT); key $$($(DOCKER) exec $(CONTAINER) /colorsort key --fingerprint)"; \
	echo ""; \
	echo "  logs:         $(DOCKER) logs -f $(CONTAINER)"; \
	echo "  key:          $(DOCKER) exec $(CONTAINER) /colorsort key > server.pub"; \
	echo "  fingerprint:  $(DOCKER) exec $(CONTAINER) /colorsort key --fingerprint"; \
	echo "                (compare with the 'key SHA256:...' in the log, and what 'colorsort send' pins)"; \
	echo "  send:         colorsort send --host 127.0.0.1:$(DOCKER_PORT) IMAGE..."; \
	echo "  files:        $(DOCKER) exec $(CONTAINER) /colorsort stats"; \
	echo "                on the host, under red/ green/ blue/ not_trusted/ in:"; \
	echo "                $(DOCKER) volume inspect -f '{{ .Mountpoint }}' $(VOLUME)"; \
	echo "  stop:         make docker-stop"

docker-stop:
	@if $(DOCKER) container inspect $(CONTAINER) >/dev/null 2>&1; then \
		$(DOCKER) stop $(CONTAINER) >/dev/null && $(DOCKER) rm $(CONTAINER) >/dev/null && \
		echo "stopped and removed $(CONTAINER); the data stays in volume $(VOLUME) ($(DOCKER) volume rm $(VOLUME) deletes it)"; \
	else \
		echo "no container named $(CONTAINER)"; \
	fi

docker-test:
	bash tests/docker-test.sh

# --- Fuzzing ---------------------------------------------------------------
#
# The cargo-fuzz targets in fuzz/ (docs/FUZZING.md), on the nightly
# toolchain, one after the other, FUZZ_SECONDS each. The committed seeds in
# fuzz/corpus/ are only read; new inputs go to fuzz/target/corpus/ and
# crashes to fuzz/artifacts/, neither committed.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= request_line age_decrypt classify
FUZZ_FLAGS ?= -rss_limit_mb=4096 -timeout=20

.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "installing cargo-fuzz"; $(CARGO) install --locked cargo-fuzz; }
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || { echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/target/corpus/$$t; \
		echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
		$(CARGO) +nightly fuzz run $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) -print_final_stats=1; \
	done

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
# here by docker-build) beside it.
BENCH_DIR := target/bench
BENCH_PY := $(BENCH_DIR)/venv/bin/python
BENCH_FLAGS ?=

.PHONY: bench
bench: $(BENCH_DIR)/assets/.done $(BENCH_DIR)/anchors.tsv
	$(CARGO) build --release
	RUSTFLAGS="$${RUSTFLAGS:-} -C target-feature=+crt-static" $(CARGO) build --release --target $(GLIBC_TARGET)
	@set -eu; \
	musl=""; \
	if [ -d "$$(rustc --print sysroot)/lib/rustlib/$(STATIC_TARGET)/lib" ] || \
		{ command -v rustup >/dev/null 2>&1 && rustup target add $(STATIC_TARGET) >/dev/null 2>&1; }; then \
		$(CARGO) build --release --target $(STATIC_TARGET) --features libc-mem; \
		cp target/$(STATIC_TARGET)/release/colorsort $(BENCH_DIR)/colorsort-musl-libc-mem; \
		$(CARGO) build --release --target $(STATIC_TARGET); \
		musl="--musl target/$(STATIC_TARGET)/release/colorsort --musl-libc-mem $(BENCH_DIR)/colorsort-musl-libc-mem"; \
	else \
		echo "Rust target $(STATIC_TARGET) not available: no musl comparison"; \
	fi; \
	image=""; \
	if $(DOCKER) info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory docker-build; \
		image="--image $(IMAGE):latest"; \
	elif [ -n "$${COLORSORT_REQUIRE_TOOLS:-}" ]; then \
		echo "container rows cannot run: no Docker engine reachable (COLORSORT_REQUIRE_TOOLS is set)" >&2; exit 1; \
	else \
		echo "SKIPPED: container rows (no Docker engine reachable)"; \
	fi; \
	$(CARGO) bench --bench bench -- --assets $(BENCH_DIR)/assets --anchors $(BENCH_DIR)/anchors.tsv \
		--work $(BENCH_DIR)/work --server target/release/colorsort $$musl $$image \
		--static-glibc target/$(GLIBC_TARGET)/release/colorsort --out docs/BENCHMARKS.md $(BENCH_FLAGS)

$(BENCH_PY):
	python3 -m venv $(BENCH_DIR)/venv
	$(BENCH_PY) -m pip install -q --disable-pip-version-check pillow numpy colorthief

$(BENCH_DIR)/assets/.done: benches/make-assets.py | $(BENCH_PY)
	$(BENCH_PY) -m pip download -q --disable-pip-version-check --no-deps scikit-image==0.26.0 -d $(BENCH_DIR)/wheel
	$(BENCH_PY) benches/make-assets.py --wheel $(BENCH_DIR)/wheel/scikit_image-0.26.0-*.whl --out $(BENCH_DIR)/assets
	touch $@

$(BENCH_DIR)/anchors.tsv: benches/anchors.py $(BENCH_DIR)/assets/.done
	$(BENCH_PY) benches/anchors.py --assets $(BENCH_DIR)/assets --out $@

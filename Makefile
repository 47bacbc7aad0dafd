# colorsort: make run | make test | make bench | make fuzz | make docker-run
# `make help` lists every target.

CARGO ?= cargo
DATA ?= ./data
LISTEN ?= 127.0.0.1:6666

.PHONY: help build release run test unit lint clean
.PHONY: docker-binary docker-build docker-run docker-stop docker-test
.PHONY: swarm-up swarm-down swarm-test k8s-validate gluster-test

help:
	@echo "make run           run the server natively on $(LISTEN) with $(DATA)"
	@echo "make test          unit and integration tests, the Docker, Swarm and GlusterFS tests when they can run, the Kubernetes validation"
	@echo "make lint          rustfmt and clippy"
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
# adds up cargo's counts. With COLORSORT_REQUIRE_TOOLS set, as CI sets it,
# a test that cannot run fails instead.
TEST_LOG := target/test.log
SKIP_LOG := $(CURDIR)/target/test-skips.log

test:
	@mkdir -p target; rm -f $(SKIP_LOG)
	@{ COLORSORT_SKIP_LOG=$(SKIP_LOG) $(MAKE) --no-print-directory test-steps 2>&1; echo $$? >$(TEST_LOG).rc; } | tee $(TEST_LOG); \
	rc=$$(cat $(TEST_LOG).rc); rm -f $(TEST_LOG).rc; \
	skipped=$$({ grep -E '(^|[^A-Za-z])SKIPPED' $(TEST_LOG) | grep -v '^make' | sed 's/^==> //'; cat $(SKIP_LOG) 2>/dev/null; } | sort -u || true); \
	nskipped=$$(printf '%s' "$$skipped" | grep -c . || true); \
	counts=$$(awk '/^test result:/ { p += $$4; f += $$6 } END { printf "%d %d", p, f }' $(TEST_LOG)); \
	echo; \
	if [ -n "$$skipped" ]; then echo "skipped $$nskipped:"; echo "$$skipped" | sed 's/^/  /'; else echo "skipped: none"; fi; \
	if [ "$$rc" = 0 ]; then echo "make test: all steps passed (log: $(TEST_LOG))"; \
	else echo "make test: FAILED (log: $(TEST_LOG))"; fi; \
	set -- $$counts; \
	echo "cargo tests: $$1 passed, $$2 failed, $$nskipped skipped"; \
	exit $$rc

.PHONY: test-steps
test-steps:
	$(CARGO) test --all-targets
	@if $(DOCKER) info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory docker-test && \
		$(MAKE) --no-print-directory swarm-test; \
	elif [ -n "$${COLORSORT_REQUIRE_TOOLS:-}" ]; then \
		echo "docker and swarm tests cannot run: no Docker engine reachable (COLORSORT_REQUIRE_TOOLS is set)" >&2; exit 1; \
	else \
		echo "SKIPPED: docker test (no Docker engine reachable)"; \
		echo "SKIPPED: swarm test (no Docker engine reachable)"; \
	fi
	@$(MAKE) --no-print-directory gluster-test
	@$(MAKE) --no-print-directory k8s-validate

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
# musl (the default, with the crate's own memcpy/memmove/memset: as fast as
# glibc, see docs/BENCHMARKS.md), or glibc for a static glibc build, which
# cannot resolve host names, so client commands in the container then take
# numeric addresses only.
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
	mode=$$($(DOCKER) logs $(CONTAINER) 2>&1 | grep -m1 'known senders: ' | sed 's/.*known senders: //'); \
	echo "known senders: $${mode:-(not in the log; see $(DOCKER) logs $(CONTAINER))}"; \
	case "$$mode" in off*) \
		echo "  to require signatures: put an allowed_signers file in the volume as /data/allowed_signers,"; \
		echo "  then: $(DOCKER) kill -s HUP $(CONTAINER)";; \
	esac; \
	echo ""; \
	echo "  logs:         $(DOCKER) logs -f $(CONTAINER)"; \
	echo "  key:          $(DOCKER) exec $(CONTAINER) /colorsort key > server.pub"; \
	echo "  fingerprint:  $(DOCKER) exec $(CONTAINER) /colorsort key --fingerprint"; \
	echo "                (compare with the 'key SHA256:...' in the log, and what 'colorsort send' pins)"; \
	echo "  signers:      edit allowed_signers in the volume; $(DOCKER) kill -s HUP $(CONTAINER) rereads it"; \
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

# --- Docker Swarm ----------------------------------------------------------
#
# The stack in deploy/swarm.yaml (see deploy/README.md), deployed as
# $(STACK) on the swarm this engine belongs to. With no swarm active,
# swarm-up makes this node a single-node swarm and notes it in
# $(SWARM_MARKER), so that swarm-down leaves only a swarm it created.
# COLORSORT_ENDPOINT_MODE=dnsrr for kernels without IPVS (no VIP, no
# routing mesh: the service is then reached from the network $(STACK)_net).
STACK ?= colorsort
COLORSORT_REPLICAS ?= 3
COLORSORT_ENDPOINT_MODE ?= vip
COLORSORT_PORT ?= 6666
SWARM_WAIT ?= 180
SWARM_MARKER := target/swarm-created-by-make
SWARM_FILES = -c deploy/swarm.yaml $(if $(filter vip,$(COLORSORT_ENDPOINT_MODE)),-c deploy/swarm-ingress.yaml)
SWARM_ENV = COLORSORT_IMAGE=$(IMAGE):latest COLORSORT_REPLICAS=$(COLORSORT_REPLICAS) \
	COLORSORT_ENDPOINT_MODE=$(COLORSORT_ENDPOINT_MODE) COLORSORT_PORT=$(COLORSORT_PORT)

swarm-up: docker-build
	@set -eu; \
	case "$(COLORSORT_ENDPOINT_MODE)" in vip|dnsrr) ;; \
		*) echo "COLORSORT_ENDPOINT_MODE must be vip or dnsrr, not $(COLORSORT_ENDPOINT_MODE)" >&2; exit 2 ;; esac; \
	state=$$($(DOCKER) info -f '{{.Swarm.LocalNodeState}}'); \
	if [ "$$state" = inactive ]; then \
		echo "no swarm active: docker swarm init --advertise-addr 127.0.0.1"; \
		$(DOCKER) swarm init --advertise-addr 127.0.0.1 >/dev/null; \
		mkdir -p $(dir $(SWARM_MARKER)); \
		$(DOCKER) info -f '{{.Swarm.NodeID}}' >$(SWARM_MARKER); \
	elif [ "$$state" != active ]; then \
		echo "this node's swarm state is '$$state'" >&2; exit 1; \
	fi; \
	[ "$$($(DOCKER) info -f '{{.Swarm.ControlAvailable}}')" = true ] || { echo "this node is not a swarm manager" >&2; exit 1; }; \
	service=$(STACK)_colorsort; \
	image_id=$$($(DOCKER) image inspect -f '{{.Id}}' $(IMAGE):latest); \
	running_id=$$($(DOCKER) service inspect -f '{{index .Spec.Labels "colorsort.image-id"}}' $$service 2>/dev/null || true); \
	set -x; \
	$(SWARM_ENV) $(DOCKER) stack deploy --resolve-image never $(SWARM_FILES) $(STACK); \
	{ set +x; } 2>/dev/null; \
	$(DOCKER) service update --detach --label-add colorsort.image-id=$$image_id $$service >/dev/null; \
	if [ -n "$$running_id" ] && [ "$$running_id" != "$$image_id" ]; then \
		echo "$(IMAGE):latest was rebuilt: rolling it out (docker service update --force)"; \
		$(DOCKER) service update --detach --force $$service >/dev/null; \
	fi; \
	printf 'waiting for %s replicas to be healthy' "$(COLORSORT_REPLICAS)"; \
	deadline=$$(( $$(date +%s) + $(SWARM_WAIT) )); \
	while :; do \
		replicas=$$($(DOCKER) service ls --filter name=$$service --format '{{.Name}} {{.Replicas}}' | awk -v s=$$service '$$1 == s { print $$2 }'); \
		update=$$($(DOCKER) service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' $$service); \
		case "$$update" in updating|rollback_started) ;; *) \
			[ "$$replicas" = "$(COLORSORT_REPLICAS)/$(COLORSORT_REPLICAS)" ] && break ;; esac; \
		if [ "$$(date +%s)" -ge "$$deadline" ]; then \
			echo; echo "not all replicas healthy after $(SWARM_WAIT) s ($$replicas, update: $${update:-none}):" >&2; \
			$(DOCKER) service ps --no-trunc $$service >&2; exit 1; \
		fi; \
		printf '.'; sleep 1; \
	done; \
	echo " $$replicas"; \
	task=$$($(DOCKER) ps -q --filter label=com.docker.swarm.service.name=$$service --filter health=healthy | head -n 1); \
	fp=$$( [ -n "$$task" ] && $(DOCKER) exec $$task /colorsort key --fingerprint || echo '(no task on this node)'); \
	echo "stack $(STACK): service $$service, $$replicas replicas, key $$fp"; \
	echo ""; \
	if [ "$(COLORSORT_ENDPOINT_MODE)" = vip ]; then \
		echo "  reach it:     port $(COLORSORT_PORT) of any node (routing mesh), e.g."; \
		echo "                colorsort send --host 127.0.0.1:$(COLORSORT_PORT) IMAGE..."; \
		if ! ./$(DOCKER_ROOT)/colorsort ping --host 127.0.0.1:$(COLORSORT_PORT) >/dev/null 2>&1; then \
			echo "  WARNING:      nothing answers on 127.0.0.1:$(COLORSORT_PORT): the routing mesh needs IPVS, which this"; \
			echo "                kernel may lack; make swarm-up COLORSORT_ENDPOINT_MODE=dnsrr works without it"; \
		fi; \
	else \
		echo "  reach it:     from a container on the network $(STACK)_net, as colorsort:6666, e.g."; \
		echo "                $(DOCKER) run --rm --network $(STACK)_net -v \"\$$PWD/images:/in:ro\" \\"; \
		echo "                    $(IMAGE) send --host colorsort:6666 /in"; \
	fi; \
	echo "  tasks:        $(DOCKER) service ps $$service"; \
	echo "  logs:         $(DOCKER) service logs -f $$service"; \
	echo "  data:         volume $(STACK)_data: $(DOCKER) volume inspect -f '{{ .Mountpoint }}' $(STACK)_data"; \
	echo "  stop:         make swarm-down"

swarm-down:
	@set -eu; \
	if [ "$$($(DOCKER) info -f '{{.Swarm.LocalNodeState}}')" != active ]; then \
		echo "no swarm active"; rm -f $(SWARM_MARKER); exit 0; \
	fi; \
	if [ -n "$$($(DOCKER) stack ls --format '{{.Name}}' | grep -x '$(STACK)' || true)" ]; then \
		$(DOCKER) stack rm $(STACK); \
		printf 'waiting for the stack to be gone'; \
		deadline=$$(( $$(date +%s) + 60 )); \
		while [ -n "$$($(DOCKER) service ls -q --filter label=com.docker.stack.namespace=$(STACK))" ] || \
			[ -n "$$($(DOCKER) ps -aq --filter label=com.docker.stack.namespace=$(STACK))" ] || \
			[ -n "$$($(DOCKER) network ls -q --filter label=com.docker.stack.namespace=$(STACK))" ]; do \
			if [ "$$(date +%s)" -ge "$$deadline" ]; then echo; echo "stack $(STACK) still not gone after 60 s" >&2; exit 1; fi; \
			printf '.'; sleep 1; \
		done; \
		echo; \
		echo "removed stack $(STACK); the data stays in volume $(STACK)_data ($(DOCKER) volume rm $(STACK)_data deletes it)"; \
	else \
		echo "no stack named $(STACK)"; \
	fi; \
	if [ -f $(SWARM_MARKER) ]; then \
		if [ "$$(cat $(SWARM_MARKER))" != "$$($(DOCKER) info -f '{{.Swarm.NodeID}}')" ]; then \
			echo "the swarm make swarm-up created is gone; this one was made otherwise: staying in it"; \
		elif [ -n "$$($(DOCKER) service ls -q)" ]; then \
			echo "other services run on this swarm: staying in it (docker swarm leave --force leaves it)"; exit 0; \
		else \
			$(DOCKER) swarm leave --force >/dev/null; echo "left the single-node swarm make swarm-up created"; \
			$(DOCKER) network rm docker_gwbridge >/dev/null 2>&1 || true; \
		fi; \
		rm -f $(SWARM_MARKER); \
	fi

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
# crashes to fuzz/artifacts/, neither committed.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= request_line age_decrypt classify sshsig allowed_signers
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

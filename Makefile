# Thin wrapper over meson/ninja and the test scripts. Quick start on Debian 12, as root:
#   make demo      build the OS image, boot it in QEMU, show a node's life (upgrade, rollback)
#   make test      build, then run every test layer
#   make check     the edit loop: unit tests and the integration tests that need no image
BUILD ?= build
MESON_OPTS ?=
# Test layers for `make test`; CI's sanitizer run narrows this to "unit integration".
LAYERS ?= unit integration e2e
# pytest marker expression narrowing the pytest layers (e.g. "not packaging").
PYTEST_MARKS ?=
# The packaging/deps.sh groups `make test` installs: every layer's tools, QEMU and the image
# tools included (tests/check_deps.py proves that the tests name no package outside them).
TEST_DEPS = build test deb image cache
# ccache (meson finds it) keyed on paths relative to the checkout, so that a clean clone in
# another folder (as CI makes) reuses what an earlier build compiled.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

.PHONY: all build deps deps-test deps-check check test test-unit test-integration test-e2e e2e-base demo demo-sandbox deb image vm bench fuzz fuzz-build format clean

all: build

deps:
	@packaging/deps.sh build cache

deps-test:
	@packaging/deps.sh $(TEST_DEPS)

deps-check:
	@tests/check_deps.py $(TEST_DEPS)

# --prefix=/usr: the tree `make test` builds is the one the packaging test makes the .deb from.
$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=/usr $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

test: deps-test $(BUILD)/build.ninja
	$(if $(filter e2e,$(LAYERS)),@$(MAKE) --no-print-directory e2e-base)
	ninja -C $(BUILD)
	PYTEST_MARKS="$(PYTEST_MARKS)" tests/run.sh $(BUILD) $(LAYERS)

# The e2e image's Debian base tree, made (or found cached) in the background: on a fresh machine
# its download and unpacking (about 2 minutes) overlap the compile and the other layers instead of
# delaying the e2e layer, whose image build waits for it (build.sh takes a lock a tree).
e2e-base:
	@mkdir -p $(BUILD)
	@echo "e2e image base tree: in the background (log: $(BUILD)/image-base.log)"
	@packaging/image/build.sh --base-only \
	  --extra-packages "$$(sed 's/#.*//' tests/e2e/extra-packages.list)" >>$(BUILD)/image-base.log 2>&1 &

test-unit test-integration test-e2e: deps-test $(BUILD)/build.ninja
	ninja -C $(BUILD)
	PYTEST_MARKS="$(PYTEST_MARKS)" tests/run.sh $(BUILD) $(@:test-%=%)

# Unit tests and the integration tests that need no image and no .deb.
check: deps-test $(BUILD)/build.ninja
	ninja -C $(BUILD)
	PYTEST_MARKS="not packaging" tests/run.sh $(BUILD) unit integration

# The node's life in QEMU (packaging/image/demo.py): first boot, upgrade, commit, failed
# upgrade, automatic rollback. Builds the image (and the .deb) when missing.
demo: deps-test
	@packaging/deps.sh image
	[ -f $(IMAGE_OUT)/disk.img ] || packaging/image/build.sh --out $(IMAGE_OUT)
	packaging/image/demo.py --image $(IMAGE_OUT)

# The agent without a VM: ballast-agent on a private bus, driven by agentctl (seconds).
demo-sandbox: deps-test $(BUILD)/build.ninja
	ninja -C $(BUILD)
	packaging/demo.sh $(BUILD)

# DEB_FROM_BUILD=1: package the tree in $(BUILD) as built (the packaging test does, so that the
# package holds the binaries the tests ran) instead of compiling it again inside dpkg-buildpackage.
DEB_FROM_BUILD ?=
deb:
	@packaging/deps.sh build deb
	packaging/build-deb.sh $(if $(DEB_FROM_BUILD),--from-build) $(BUILD)

# The bootable OS image (packaging/image/build.sh): $(IMAGE_OUT)/disk.img, from Debian 12
# packages (base tree cached in /var/cache/ballast/image) and the .deb (made by `make deb`
# when there is none). `make vm` boots it in QEMU with the console here (Ctrl-a x quits).
IMAGE_OUT ?= $(BUILD)/image

image:
	packaging/image/build.sh --out $(IMAGE_OUT)

vm:
	[ -f $(IMAGE_OUT)/disk.img ] || packaging/image/build.sh --out $(IMAGE_OUT)
	packaging/image/boot-smoke.sh --interactive $(IMAGE_OUT)/disk.img

# libFuzzer over the parsers of untrusted input (tests/fuzz), built with clang-16 in build-fuzz
# (`make fuzz-build` only compiles it; CI's fuzzers are built in its instrumented tree, .ci/run).
fuzz-build: deps-test
	[ -f build-fuzz/build.ninja ] || CXX="ccache clang++-16" meson setup build-fuzz -Dfuzz=true
	ninja -C build-fuzz

fuzz: fuzz-build
	tests/run.sh build-fuzz fuzz

bench: deps-test $(BUILD)/build.ninja
	@packaging/deps.sh bench
	ninja -C $(BUILD)
	tests/bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD)

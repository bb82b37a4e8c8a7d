# Thin wrapper over meson/ninja and the test scripts. Quick start on Debian 12, as root:
#   make demo      build the OS image, boot it in QEMU, show a node's life (upgrade, rollback)
#   make test      build, then run every test layer
BUILD ?= build
MESON_OPTS ?=
# Test layers for `make test`; CI's sanitizer run narrows this to "unit integration".
LAYERS ?= unit integration e2e
# pytest marker expression narrowing the pytest layers (e.g. "not packaging").
PYTEST_MARKS ?=

.PHONY: all build deps deps-test test test-unit test-integration test-e2e demo demo-sandbox deb image vm bench fuzz format clean

all: build

deps:
	@packaging/deps.sh build

deps-test:
	@packaging/deps.sh build test

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

test: deps-test $(BUILD)/build.ninja
	ninja -C $(BUILD)
	PYTEST_MARKS="$(PYTEST_MARKS)" tests/run.sh $(BUILD) $(LAYERS)

test-unit test-integration test-e2e: deps-test $(BUILD)/build.ninja
	ninja -C $(BUILD)
	PYTEST_MARKS="$(PYTEST_MARKS)" tests/run.sh $(BUILD) $(@:test-%=%)

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

deb:
	@packaging/deps.sh build deb
	packaging/build-deb.sh $(BUILD)

# The bootable OS image (packaging/image/build.sh): $(IMAGE_OUT)/disk.img, from Debian 12
# packages (base tree cached in /var/cache/ballast/image) and the .deb (made by `make deb`
# when there is none). `make vm` boots it in QEMU with the console here (Ctrl-a x quits).
IMAGE_OUT ?= $(BUILD)/image

image:
	packaging/image/build.sh --out $(IMAGE_OUT)

vm:
	[ -f $(IMAGE_OUT)/disk.img ] || packaging/image/build.sh --out $(IMAGE_OUT)
	packaging/image/boot-smoke.sh --interactive $(IMAGE_OUT)/disk.img

# libFuzzer over the config loader, built with clang-16 in build-fuzz.
fuzz: deps-test
	[ -f build-fuzz/build.ninja ] || CXX=clang++-16 meson setup build-fuzz -Dfuzz=true
	ninja -C build-fuzz
	tests/run.sh build-fuzz fuzz

bench: deps-test $(BUILD)/build.ninja
	@packaging/deps.sh bench
	ninja -C $(BUILD)
	tests/bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD)

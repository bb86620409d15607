# cmf — the two entry points of the README:
#   make demo   install what is missing, build, generate a small Gemma 3 checkpoint, quantize it
#   make test   install what is missing, build, run every test (ctest)
# Everything comes from Debian's apt and the npm registry.

BUILD     ?= build
JOBS      ?= $(shell nproc)
DEMO_DIR  ?= demo-out
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS  := cmake ninja-build g++ clang libboost-dev libssl-dev nlohmann-json3-dev libzstd-dev \
             libgtest-dev libbenchmark-dev zstd ca-certificates nodejs npm time python3 \
             docker-registry

.PHONY: all deps build test demo bench clean

all: build

# Installs the Debian packages that are not installed yet (no-op when all are present).
deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ "$$missing" = " nodejs npm" ] || [ "$$missing" = " npm" ] || [ "$$missing" = " nodejs" ]; then \
	  if command -v node >/dev/null && command -v npm >/dev/null; then missing=""; fi; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

test: build
	bash tests/llama/setup.sh >/dev/null
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 1200

demo: build
	@rm -rf $(DEMO_DIR)
	$(BUILD)/cmf synth $(DEMO_DIR)/tiny-medgemma --preset tiny-mm
	$(BUILD)/cmf quantize $(DEMO_DIR)/tiny-medgemma --quant f16,q8_0 --mmproj --out $(DEMO_DIR)/gguf
	$(BUILD)/cmf inspect $(DEMO_DIR)/gguf/tiny-medgemma-Q8_0.gguf | head -40

bench: build
	bash bench/medium_memory.sh

clean:
	rm -rf $(BUILD) $(DEMO_DIR)

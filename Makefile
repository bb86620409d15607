# cmf — the two entry points of the README:
#   make demo   install what is missing, build, run the factory on a small generated checkpoint
#               (local backend) and publish one variant to a local Ollama store
#   make test   install what is missing, build, run every test (ctest)
# Everything comes from Debian's apt (scripts/deps.sh: only what is missing) and the npm registry;
# Node.js >= 20 with its npm must already be there for test/bench (Debian 12's is 18).

BUILD     ?= build
JOBS      ?= $(shell nproc)
DEMO_DIR  ?= demo-out

.PHONY: all deps deps-build deps-demo deps-test deps-bench build test demo bench clean

all: build

# Installs from Debian's apt what is missing for everything (`make test`'s needs); scripts/deps.sh
# decides by what is on PATH / on disk, not by package names. `scripts/deps.sh --dry-run TARGET`
# prints the plan without installing.
deps:
	@bash scripts/deps.sh test

deps-build deps-demo deps-test deps-bench:
	@bash scripts/deps.sh $(@:deps-%=%)

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps-build $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

test: deps-test build
	bash tests/llama/setup.sh >/dev/null
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 1200

# The demo needs only the cmf binary: on a fresh 2-core machine that is 17 of the 52 compilations.
demo: deps-demo $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS) cmf
	@rm -rf $(DEMO_DIR)
	@echo "== 1. a small generated Gemma 3 checkpoint with a vision tower (MedGemma-shaped, random weights)"
	$(BUILD)/cmf synth $(DEMO_DIR)/tiny-medgemma --preset tiny-mm
	@echo "== 2. the factory, local backend: one worker process builds q4 (Q4_K_M), q8 (Q8_0) and f16 from"
	@echo "==    one read of the source; a directory stands in for the GCS bucket"
	$(BUILD)/cmf build q4,q8,f16 --backend local --source $(DEMO_DIR)/tiny-medgemma --bucket $(DEMO_DIR)/bucket --quiet
	@echo "== 3. what the bucket says (markers, sizes, heartbeat)"
	$(BUILD)/cmf status --backend local --bucket $(DEMO_DIR)/bucket
	@echo "== 4. publish q8 to a local Ollama store (what 'ollama list' reads; OLLAMA_MODELS=$(DEMO_DIR)/ollama)"
	$(BUILD)/cmf import $(DEMO_DIR)/bucket/models/coheara-medgemma-4b-q8 coheara-medgemma-4b-q8 \
	  --license $(DEMO_DIR)/tiny-medgemma/LICENSE --store $(DEMO_DIR)/ollama
	@echo "== 5. the GGUF's metadata"
	$(BUILD)/cmf inspect $(DEMO_DIR)/bucket/models/coheara-medgemma-4b-q8/tiny-medgemma-Q8_0.gguf | head -25

bench: deps-bench build
	bash tests/llama/setup.sh >/dev/null   # libggml-base.so: the reference quantizers
	$(BUILD)/quant_throughput --benchmark_min_time=0.5
	bash bench/e2e.sh --cmf $(BUILD)/cmf
	bash bench/e2e_families.sh --cmf $(BUILD)/cmf
	bash bench/lora_merge.sh --cmf $(BUILD)/cmf
	sh bench/download.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(DEMO_DIR)

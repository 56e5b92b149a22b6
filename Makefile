# Thin wrappers over dotnet. `make test` is what CI runs (.ci/run); `make run` is the main job on embedded data.
SHELL := /bin/bash
DOTNET ?= dotnet
CONFIGURATION ?= Release
CLI := $(DOTNET) run --project src/MetaMae.Cli -c $(CONFIGURATION) --
RUN_CONFIG ?= config/runs/fashion-mnist.json
SUITE ?= config/benchmarks/real-cpu.json
ARGS ?=

# glibc otherwise maps/unmaps large activations every step (see README, "Performance"). Same as `--allocator glibc-tuned`.
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 17179869184
export MALLOC_TOP_PAD_ ?= 268435456
# Where libjemalloc2 is installed, runs preload it without page purging (`--allocator jemalloc`): faster than tuned
# glibc and about 30% less peak memory (README, "Performance").
JEMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2))
ifneq ($(JEMALLOC),)
run benchmark: export LD_PRELOAD := $(JEMALLOC)
run benchmark: export MALLOC_CONF := dirty_decay_ms:-1,muzzy_decay_ms:-1
endif
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1

.PHONY: setup build test run benchmark bench bench-model bench-data bench-allreduce bench-scaling publish clean

setup:
	$(DOTNET) restore MetaMae.Actors.sln
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq libjemalloc2 espeak-ng vorbis-tools) >/dev/null || echo "optional packages not installed (jemalloc for bench, espeak-ng for synthetic speech, vorbis-tools for the Ogg test)"; fi

build:
	$(DOTNET) build MetaMae.Actors.sln -c $(CONFIGURATION)

# Test assemblies run one after another (-m:1): they all use libtorch, and two at once on 2 cores is slower, not faster.
test:
	$(DOTNET) test MetaMae.Actors.sln -c $(CONFIGURATION) -m:1 $(ARGS)

run:
	$(CLI) run --config $(RUN_CONFIG) $(ARGS)

# The accuracy benchmark across modalities (about an hour on 2 cores; resumable: run it again after a kill).
benchmark:
	$(CLI) benchmark --suite $(SUITE) $(ARGS)

bench: bench-model bench-data

bench-model:
	$(CLI) bench model $(ARGS)

bench-data:
	$(CLI) bench data $(ARGS)

bench-allreduce:
	$(CLI) bench allreduce $(ARGS)

bench-scaling:
	$(CLI) bench scaling $(ARGS)

publish:
	$(DOTNET) publish src/MetaMae.Cli -c $(CONFIGURATION) -o artifacts/metamae

clean:
	$(DOTNET) clean MetaMae.Actors.sln -c $(CONFIGURATION)
	rm -rf artifacts

# backstop: convenience targets over Meson. `make` builds, `make test` runs everything the CI
# runs (unit, integration and fuzz, normal and ASan+UBSan builds), `make demo` shows it working.

BUILD        ?= build
BUILD_ASAN   ?= build-asan
BUILD_FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 30
JOBS         ?= 2
PYTHON       ?= /usr/bin/python3
PYTEST_ARGS  ?=
NINJA        = ninja -j$(JOBS)
PYTEST       = $(PYTHON) -m pytest -c tests/integration/pytest.ini tests/integration $(PYTEST_ARGS)

export ASAN_OPTIONS  ?= detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

.PHONY: deps all build asan fuzz-build test unit unit-asan integration integration-asan fuzz demo \
	install clean deb deb-test deb-lint

all: build

# Packages for building and testing, installed only when some are missing (needs root then).
deps:
	@scripts/install-deps.sh --if-missing

build:
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD)
	$(NINJA) -C $(BUILD)

asan:
	@test -f $(BUILD_ASAN)/build.ninja || \
		meson setup $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false
	$(NINJA) -C $(BUILD_ASAN)

fuzz-build:
	@test -f $(BUILD_FUZZ)/build.ninja || \
		CC=clang-14 meson setup $(BUILD_FUZZ) -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dbuildtype=debugoptimized
	$(NINJA) -C $(BUILD_FUZZ)

# Every step must pass; pytest's "no tests collected" (exit 5) fails the build like any error.
test: deps
	$(MAKE) --no-print-directory unit unit-asan integration integration-asan fuzz
	@echo "make test: all suites passed"

unit: build
	meson test -C $(BUILD) --print-errorlogs --num-processes $(JOBS)

unit-asan: asan
	meson test -C $(BUILD_ASAN) --print-errorlogs --num-processes $(JOBS)

integration: build
	BACKSTOP_BIN=$(CURDIR)/$(BUILD)/backstop $(PYTEST)

integration-asan: asan
	BACKSTOP_BIN=$(CURDIR)/$(BUILD_ASAN)/backstop $(PYTEST)

# Run each fuzz target that the fuzz build produced for FUZZ_SECONDS, seeded from
# tests/fuzz/corpus/TARGET when that directory exists, with tests/fuzz/TARGET.dict if it exists.
fuzz: fuzz-build
	@targets=$$($(PYTHON) tests/list_fuzz_targets.py $(BUILD_FUZZ)); \
	if [ -z "$$targets" ]; then echo "fuzz: no fuzz targets defined yet"; exit 0; fi; \
	for exe in $$targets; do \
		name=$$(basename $$exe); work=$$(mktemp -d); \
		seeds=tests/fuzz/corpus/$$name; [ -d $$seeds ] || seeds=; \
		dict=tests/fuzz/$$name.dict; if [ -f $$dict ]; then dict=-dict=$$dict; else dict=; fi; \
		echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
		$$exe -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 $$dict \
			-print_final_stats=1 -artifact_prefix=$$work/ $$work $$seeds \
			> $$work/log 2>&1 || { tail -50 $$work/log; echo "fuzz: $$name FAILED"; exit 1; }; \
		grep -E '^(stat::number_of_executed_units|Done)' $$work/log || true; \
		rm -rf $$work; \
	done

demo:
	demo/run-demo.sh

install: build
	meson install -C $(BUILD)

# The Debian package (debian/): dpkg-buildpackage leaves backstop_VERSION_ARCH.deb (with its
# -dbgsym package, .buildinfo and .changes) in the parent directory; they are moved to the top
# of this tree. lintian checks them: make deb-lint.
DEB_VERSION = $(shell dpkg-parsechangelog -S Version)
DEB_ARCH    = $(shell dpkg-architecture -qDEB_HOST_ARCH)
DEB         = backstop_$(DEB_VERSION)_$(DEB_ARCH).deb
deb:
	dpkg-buildpackage -us -uc -b
	mv ../backstop_$(DEB_VERSION)_$(DEB_ARCH).deb ../backstop-dbgsym_$(DEB_VERSION)_$(DEB_ARCH).deb \
		../backstop_$(DEB_VERSION)_$(DEB_ARCH).buildinfo ../backstop_$(DEB_VERSION)_$(DEB_ARCH).changes .
	@echo "make deb: $(DEB)"

# Build the package, install it, run it, upgrade it over itself, purge it (needs root; touches
# the system: for CI's fresh machine, or a throwaway one).
deb-test:
	tests/package/test-deb.sh

deb-lint:
	lintian --pedantic --display-info backstop_$(DEB_VERSION)_$(DEB_ARCH).changes

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)

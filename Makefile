# gpulse: `make run` serves a simulated node, `make test` runs the whole suite, `make image`
# builds the container image. Each installs what it needs: `make run` a local virtualenv with
# the runtime dependencies and the Cython build; `make test` also the test tools and, as root
# with apt, Debian's prometheus, prometheus-alertmanager, pci.ids and the image tools (mmdebstrap,
# buildah, podman, runc); without apt or root the tests that need them skip and say why.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= build/image/gpulse-$(VERSION).oci.tar
RUN_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run runtime test e2e bench lint setup build deb-deps image docs generate proto pciids clean

# The virtualenv and the build tools: all the extensions' build needs.
$(VENV)/.stamp-tools:
	@$(PYTHON) -c 'import sys; sys.exit(None if sys.version_info >= (3, 10) else \
	  "gpulse needs Python 3.10 or newer; $(PYTHON) is " + sys.version.split()[0] + " (make run PYTHON=python3.12)")'
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "make: $(PYTHON) -m venv failed; on Debian/Ubuntu:" \
	  "apt-get install python3-venv"; exit 1; }
	$(PIP) install -qq "setuptools>=77" wheel "cython>=3.0"
	touch $@

# Runtime dependencies only, with the agent installed editable (the extensions come next).
$(VENV)/.stamp-deps: $(VENV)/.stamp-tools pyproject.toml
	GPULSE_NO_EXTENSIONS=1 $(PIP) install -qq --no-build-isolation -e .
	touch $@

# The test tools (pytest, ruff, mypy, kubectl, ...): `make test`, not `make run`.
$(VENV)/.stamp-test: $(VENV)/.stamp-deps
	GPULSE_NO_EXTENSIONS=1 $(PIP) install -qq --no-build-isolation -e '.[test]'
	touch $@

# The extensions, compiled in parallel, again whenever a .pyx changes. Without a usable C++
# compiler setup.py warns once and the agent runs on its pure-Python twins; the stamp is then
# left out, so the next make tries again.
$(VENV)/.stamp-build: $(VENV)/.stamp-tools $(wildcard ext/*.pyx) setup.py
	$(PY) setup.py -q build_ext --inplace
	@if [ "$$(ls agent/_*.so 2>/dev/null | wc -l)" = "$(words $(wildcard ext/*.pyx))" ]; then touch $@; fi

# Dependencies and the build in parallel: pip waits on the network, the compiler on the CPU.
runtime:
	@$(MAKE) --no-print-directory -j3 $(VENV)/.stamp-deps $(VENV)/.stamp-build

setup build: runtime $(VENV)/.stamp-test

# Debian packages for the end-to-end and image tests, when missing; one line and no failure
# where apt-get is missing or this is not root (those tests then skip, or fail under CI=1).
deb-deps:
	@need=""; \
	command -v promtool >/dev/null || need="$$need prometheus"; \
	command -v alertmanager >/dev/null || command -v prometheus-alertmanager >/dev/null || need="$$need prometheus-alertmanager"; \
	test -f /usr/share/misc/pci.ids || need="$$need pci.ids"; \
	for t in mmdebstrap buildah podman; do command -v $$t >/dev/null || need="$$need $$t"; done; \
	[ -x /usr/sbin/runc ] || need="$$need runc"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ]; then \
	  echo "make: not installing$$need (needs apt-get as root); the tests that use them skip"; exit 0; fi; \
	echo "installing Debian packages:$$need"; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; } \
	  || echo "make: apt-get could not install$$need; the tests that use them skip"

run: runtime
	$(VENV)/bin/gpulse serve --nvml.backend=fake --scenario=reference $(RUN_ARGS)

test: setup deb-deps lint
	$(PY) -m pytest tests
	GPULSE_NO_EXTENSIONS=1 $(PY) -m pytest -m kernels tests/unit

e2e: setup deb-deps
	$(PY) -m pytest -m e2e tests/e2e

# The container image as an OCI archive, built without a container registry (Debian bases
# from mmdebstrap, the Containerfile by buildah); see deploy/image/build.sh.
image: runtime
	PYTHON=$(PY) deploy/image/build.sh $(IMAGE)

bench: setup
	$(PY) bench/run.py

# ruff and mypy (strict on agent/), then every generated artifact must be current.
lint: setup
	$(VENV)/bin/ruff check agent tests bench tools deploy dashboards
	$(VENV)/bin/mypy
	$(PY) tools/gen_docs.py --check README.md
	$(PY) deploy/generate.py --check
	$(PY) dashboards/generate.py --check

docs: setup
	$(PY) tools/gen_docs.py --write README.md

# Generated artifacts checked by tests: PrometheusRule from the rule files, dashboards, scenarios.
generate: setup docs pciids
	$(PY) deploy/generate.py
	$(PY) dashboards/generate.py
	$(PY) tools/gen_scenarios.py

proto: setup
	$(PY) tools/gen_proto.py

# The PCI device-id table of the identity resolver, from Debian's pci.ids (tests check it is current).
pciids: setup deb-deps
	$(PY) tools/gen_pci_ids.py

clean:
	rm -rf $(VENV) build agent/*.so ext/*.c ext/*.cpp

# gpulse: `make run` serves a simulated node, `make test` runs the whole suite.
# Both install what they need: a local virtualenv, the Cython build and, for the tests,
# Debian's prometheus, prometheus-alertmanager and pci.ids when missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test e2e bench lint setup build deb-deps docs generate proto pciids clean

$(VENV)/.stamp-deps: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel cython
	# the extensions are built once, in place, by the next rule
	GPULSE_NO_EXTENSIONS=1 $(PIP) install -q -e '.[test]'
	touch $@

# Rebuild the extensions whenever a .pyx changes.
$(VENV)/.stamp-build: $(VENV)/.stamp-deps $(wildcard ext/*.pyx) setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $@

setup build: $(VENV)/.stamp-build

deb-deps:
	@need=""; \
	command -v promtool >/dev/null || need="$$need prometheus"; \
	command -v alertmanager >/dev/null || command -v prometheus-alertmanager >/dev/null || need="$$need prometheus-alertmanager"; \
	test -f /usr/share/misc/pci.ids || need="$$need pci.ids"; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	fi

run: setup
	$(VENV)/bin/gpulse serve --nvml.backend=fake --scenario=reference

test: setup deb-deps lint
	$(PY) -m pytest tests
	GPULSE_NO_EXTENSIONS=1 $(PY) -m pytest -m kernels tests/unit

e2e: setup deb-deps
	$(PY) -m pytest -m e2e tests/e2e

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
	rm -rf $(VENV) build agent/*.so ext/*.c

# portside — the two commands a newcomer needs: `make test` and `make lab`.
# Both set everything up on a fresh Debian/Ubuntu machine (as root): missing apt packages, the
# virtual environment at .venv/ with the project installed editable, then run.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Slow fixtures (the debootstrapped Debian base image) are cached here, outside the repository,
# keyed by their inputs.
export PORTSIDE_TEST_CACHE ?= /var/cache/portside-test

APT_PACKAGES := runc busybox-static debootstrap skopeo umoci podman docker-registry nftables \
	iproute2 zstd apache2-utils golang-github-containers-common python3-venv chromium \
	slurmctld slurmd slurm-client munge uidmap slirp4netns passt docker.io libseccomp2 tini \
	crun fuse-overlayfs
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps venv compile lint test test-unit lab labext lab-panel jupyter-links wheel clean bench bench-venv

help:
	@echo "make test   set up and run the whole test suite (as root)"
	@echo "make lab    set up, bootstrap a base image and open JupyterLab"

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	$(MAKE) --no-print-directory jupyter-links
	touch $@

# Byte-compile the package even where PYTHONDONTWRITEBYTECODE is set: every CLI call would
# otherwise recompile what it imports (about 50 ms).
compile: venv
	$(PY) -m compileall -q engine kernel portside >/dev/null

# The editable install does not copy data files: point the venv's Jupyter at the repository's
# prebuilt side panel, the server extension switch and the "Python 3 (portside)" kernel.
jupyter-links:
	mkdir -p $(VENV)/share/jupyter/labextensions $(VENV)/etc/jupyter/jupyter_server_config.d
	ln -sfn $(CURDIR)/kernel/labextension $(VENV)/share/jupyter/labextensions/portside
	install -m 644 jupyter-config/jupyter_server_config.d/portside.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/portside.json
	$(PY) -m portside.kernel.kernelspec install --sys-prefix >/dev/null

# The side panel. kernel/labextension/ holds the committed build (what the wheel ships) and, in
# sources.sha256, the stamp of the labextension/ sources it was built from.
#   make labext     rebuild the committed panel from labextension/ (needs Node.js >= 20.19) and
#                   record its stamp: what a change to the panel's sources is committed with.
#   make lab-panel  (part of `make lab`) nothing when the sources match the committed build;
#                   else build them into build/labextension/ (ignored, so the git tree stays
#                   clean) and point the venv's Jupyter at that. npm ci runs only when
#                   node_modules/ is missing or older than package-lock.json.
NODE_OK = node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' 2>/dev/null
NPM_CI = if [ ! -f labextension/node_modules/.package-lock.json ] || \
	  [ labextension/package-lock.json -nt labextension/node_modules/.package-lock.json ]; then \
	  (cd labextension && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error); fi
PANEL_BUILD := build/labextension
PANEL_SRC := build/labextension-src

labext: venv
	@$(NODE_OK) || { echo "make labext needs Node.js >= 20.19"; exit 1; }
	@$(NPM_CI)
	cd labextension && PATH=$(CURDIR)/$(VENV)/bin:$$PATH npm run --silent build
	python3 labextension/stamp.py --write

lab-panel: venv
	@if python3 labextension/stamp.py --check; then \
	  ln -sfn $(CURDIR)/kernel/labextension $(VENV)/share/jupyter/labextensions/portside; \
	elif $(NODE_OK); then \
	  echo "labextension/ changed since the committed panel: building it into $(PANEL_BUILD)/"; \
	  $(NPM_CI) && \
	  rm -rf $(PANEL_SRC) $(PANEL_BUILD) && mkdir -p $(PANEL_SRC) && \
	  cp -r labextension/package.json labextension/tsconfig.json labextension/src \
	    labextension/style $(PANEL_SRC)/ && \
	  ln -s $(CURDIR)/labextension/node_modules $(PANEL_SRC)/node_modules && \
	  sed -i 's#"outputDir": *"[^"]*"#"outputDir": "../labextension"#' $(PANEL_SRC)/package.json && \
	  (cd $(PANEL_SRC) && PATH=$(CURDIR)/$(VENV)/bin:$$PATH npm run --silent build) && \
	  ln -sfn $(CURDIR)/$(PANEL_BUILD) $(VENV)/share/jupyter/labextensions/portside; \
	else \
	  echo "labextension/ changed, but Node.js >= 20.19 is missing: using the committed panel"; \
	  ln -sfn $(CURDIR)/kernel/labextension $(VENV)/share/jupyter/labextensions/portside; \
	fi

venv: $(VENV)/.installed

# Type-check portside.engine and portside.kernel (config in pyproject.toml). mypy cannot follow
# the editable install's mapping of engine/ and kernel/ onto portside.*, so a tree of links
# under build/mypy/ gives it the import names.
lint: venv
	@mkdir -p build/mypy/portside
	@ln -sfn $(CURDIR)/portside/__init__.py build/mypy/portside/__init__.py
	@ln -sfn $(CURDIR)/engine build/mypy/portside/engine
	@ln -sfn $(CURDIR)/kernel build/mypy/portside/kernel
	$(VENV)/bin/mypy

test: deps venv compile lint
	$(VENV)/bin/pytest -q

test-unit: venv
	$(VENV)/bin/pytest -q -m "unit or conformance"

wheel: venv
	$(PY) -m pip wheel --no-deps -w dist .

LAB_PORT ?= 8888
lab: deps venv jupyter-links lab-panel
	$(VENV)/bin/portside images -q --filter reference=portside/debian:bookworm | grep -q . || \
	  $(VENV)/bin/portside image bootstrap debian:bookworm --include python3 -t portside/debian:bookworm
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) \
	  --no-browser --ServerApp.root_dir=$(CURDIR)/notebooks $(if $(SUDO),,--allow-root)

clean:
	rm -rf $(VENV) $(BENCH_VENV) dist build *.egg-info

# Benchmarks (not tests): side by side with Docker (Debian's docker.io, its own dockerd) and podman.
# The CLI is measured as users get it: the wheel installed in a venv of its own (the development
# venv's editable install adds an import hook that costs every command ~20 ms).
BENCH_VENV := .bench-venv
bench-venv: venv
	rm -rf $(BENCH_VENV) build/bench-wheel
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w build/bench-wheel .
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q build/bench-wheel/*.whl
	$(BENCH_VENV)/bin/python -m compileall -q $(BENCH_VENV)/lib >/dev/null

bench: deps venv bench-venv
	@dpkg-query -W -f='$${Status}' docker.io 2>/dev/null | grep -q "ok installed" || \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io
	cd bench && ../$(PY) bench_import.py

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
	iproute2 zstd apache2-utils golang-github-containers-common python3-venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps venv test test-unit lab wheel clean bench

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
	touch $@

venv: $(VENV)/.installed

test: deps venv
	$(VENV)/bin/pytest -q

test-unit: venv
	$(VENV)/bin/pytest -q -m "unit or conformance"

wheel: venv
	$(PY) -m pip wheel --no-deps -w dist .

lab: deps venv
	$(VENV)/bin/portside images -q --filter reference=portside/debian:bookworm | grep -q . || \
	  $(VENV)/bin/portside image bootstrap debian:bookworm --include python3 -t portside/debian:bookworm
	@echo "JupyterLab arrives with the notebook issue; the engine CLI is ready: $(VENV)/bin/portside --help"

clean:
	rm -rf $(VENV) dist build *.egg-info

# Benchmarks (not tests): side by side with Docker (Debian's docker.io, its own dockerd) and podman.
bench: deps venv
	@dpkg-query -W -f='$${Status}' docker.io 2>/dev/null | grep -q "ok installed" || \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io
	cd bench && ../$(PY) bench_import.py

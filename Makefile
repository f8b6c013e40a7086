# SplitRTC: `make run` installs what is missing and runs the live demo; `make test` runs the tests.
# Every install step lives here, so a fresh machine needs nothing but python3, node/npm and make.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8080
ROOM   ?= demo
# The CIFAR-10 tarball lives beside the repository, never in it (training, study, tests).
export SPLITRTC_DATA ?= $(abspath ../shared/data/cifar10-jpeg.tar.xz)

.PHONY: help run test test-py test-js test-slow lint setup setup-dev system-packages chromium cert bench study train privacy defend clean

help:           ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

run: setup      ## install what is missing, start server + receiver + sender (built-in pattern), print the dashboard URL
	$(PY) demo.py --port $(PORT) --room $(ROOM)

test: setup-dev ## install what is missing, lint and type-check, run every test (Python and JavaScript)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q
	npm test --silent

lint: $(VENV)/.dev ## ruff and mypy over the Python code: zero findings
	$(PY) -m ruff check .
	$(PY) -m mypy

test-py: setup-dev
	$(PY) -m pytest -q

test-slow: setup-dev ## the slow set: full-test-set accuracy, small study, soak-style checks
	$(PY) -m pytest -q -m slow

test-js: node_modules/.installed
	npm test --silent

bench: setup-dev ## loopback benchmark of every split point (20 s each: peers pinned with uvloop, with asyncio, unpinned), and the transport's floor
	$(PY) -m bench.loopback --out results/loopback
	$(PY) -m bench.loopback --event-loop asyncio --out results/loopback-asyncio
	$(PY) -m bench.loopback --event-loop asyncio --no-pin --out results/loopback-unpinned
	$(PY) -m bench.transport_floor --event-loop asyncio --out results/transport_floor/asyncio.json
	$(PY) -m bench.transport_floor --event-loop uvloop --out results/transport_floor/uvloop.json

train: $(VENV)/.train ## train SplitNet on CIFAR-10 (CPU, ~40 min), export, calibrate codecs, quantize heads
	$(PY) -m training.train --out build/splitnet.pt
	$(PY) -m training.export build/splitnet.pt --out models
	$(PY) -m training.calibrate
	$(PY) -m training.quantize

privacy: $(VENV)/.train ## inversion attacks at every split x codec x head (~35 min on 2 cores): results/privacy.*
	$(PY) -m training.privacy

DEFEND_ARGS ?= --channels 32 --size 4 --epochs 12 --nopeek 1.0 --kd 1.0 --tail-lr 0.1
defend: $(VENV)/.train ## train the defended split stage1-private (~30 min), export, calibrate, quantize, attack it
	$(PY) -m training.defend $(DEFEND_ARGS) --out build/defended.pt
	$(PY) -m training.defend --export build/defended.pt
	$(PY) -m training.calibrate --splits stage1-private
	$(PY) -m training.quantize --splits stage1-private
	$(PY) -m bench.study --splits stage1-private --merge
	$(PY) -m training.privacy --splits stage1-private --train-images 10000 --epochs 4 --merge
	$(PY) -m splitcore.offline.operating

study: setup-dev ## the split-point study (~25 min) and the operating points --split auto reads
	$(PY) -m bench.study
	$(PY) -m splitcore.offline.operating

setup: $(VENV)/.runtime node_modules/.installed
setup-dev: $(VENV)/.dev node_modules/.installed system-packages

# Debian packages the tests use: Chromium for the pages (never `playwright install`), coturn
# (a real TURN relay), tcpdump (what crosses the relay), iproute2 (network namespaces),
# redis-server (signaling across nodes).
APT_PACKAGES := chromium coturn tcpdump iproute2 redis-server
system-packages: ## Debian's chromium, coturn, tcpdump, iproute2 and redis-server for the tests
	@missing=""; for c in chromium turnserver tcpdump ip redis-server; do command -v $$c >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; fi

chromium: system-packages

cert: $(VENV)/.runtime ## a local CA and a certificate for this machine's LAN addresses, in build/certs
	$(PY) -m signaling.certs --out build/certs

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

$(VENV)/.train: requirements-train.txt requirements-dev.txt requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-train.txt
	touch $@ $(VENV)/.dev $(VENV)/.runtime

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:          ## remove the virtual environment, node_modules and build outputs
	rm -rf $(VENV) node_modules build .pytest_cache .hypothesis

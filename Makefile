# Everything runs from a virtual environment made here, once, from the development and test lock
# (requirements-dev.txt, which holds every pin of the runtime lock requirements.txt unchanged). The image installs only
# the runtime lock. Both are hashed and installed with pip's --require-hashes, by the pip the images use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The images' pip (deploy/base-images: PIP_VERSION, AIRFLOW_PIP_VERSION; devstack.locks.PIP_VERSION).
PIP_VERSION := 26.1.2

.PHONY: install check test run bench soak lock deploy-test deploy-images

install: $(VENV)/.installed

# The editable install ships imrt_sync and imrt_compat (pyproject.toml); include/ on the path (imrt-dev.pth) adds
# the dev-only packages, itembank_server and devstack, which are never packaged.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "pip==$(PIP_VERSION)"
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_path('purelib'), 'imrt-dev.pth').write_text('$(CURDIR)/include\n')"
	$(BIN)/pip check
	touch $@

# The quick gate, stopping at the first failure: ruff's lint and format check over the repository, mypy over
# imrt_sync and imrt_compat (configured in pyproject.toml), then the fast tests (no end-to-end module: those start
# Airflow). About 4 minutes; `make test` runs the whole suite.
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not e2e"

# The whole suite, what CI runs: make check, then the end-to-end modules two at a time (each module starts its own
# Airflow stack, on its own ports and databases; --dist loadfile keeps a module's tests on one worker).
test: check
	$(BIN)/python -m pytest -m e2e -n 2 --dist loadfile

run: install
	$(BIN)/python -m devstack run

# Issue 22 requirement 5's benchmark (docs/performance.md, "Running each case"); everything by default (hours), e.g.
# make bench BENCH_ARGS="--planning-only 100000" or BENCH_ARGS="--push-latency --sizes 20000" for one case.
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m devstack.bench $(BENCH_ARGS)

# A seeded chaos soak of the real stack, e.g. make soak SOAK_ARGS="--minutes 30" (--seed N replays a seed).
soak: install
	$(BIN)/python -m devstack.soak $(SOAK_ARGS)

# The deployment for real, from nothing, on this machine (root, Debian): Docker Engine and Compose from Debian's
# packages, the base images built here, docker-compose.yaml run as written with the demo profile, its checks, then
# everything stopped (docs/deployment.md, "The deploy test"). E.g. make deploy-test DEPLOY_TEST_ARGS=--keep-running
deploy-test: install
	$(BIN)/python -m devstack.deploy_test $(DEPLOY_TEST_ARGS)

# Only the deploy test's first half: the engine and every image (stand-ins and the project's), built and kept in
# Docker's store; .ci/run builds them while the tests run, so that make deploy-test only runs its checks.
deploy-images: install
	$(BIN)/python -m devstack.deploy_test --images-only

# Regenerate requirements.txt and requirements-dev.txt, hashed, from the .in files with pip-tools' pip-compile in a
# scratch venv, keeping the pins they have; each lock must then install alone with --require-hashes, pass pip check
# and freeze to itself (docs/development.md, "Regenerating the locks"). Moving pins: make lock LOCK_ARGS=--upgrade,
# or LOCK_ARGS="--upgrade-package NAME" (repeatable).
lock:
	PYTHONPATH=include $(PYTHON) -m devstack.locks $(LOCK_ARGS)

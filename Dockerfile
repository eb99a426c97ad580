# The project image: the official Apache Airflow image plus git, the runtime lock (requirements.txt), the runtime
# packages (include/imrt_sync, include/imrt_compat), the DAG and the compatibility plugin. Nothing else: no test
# tool, no benchmark, no item bank server (include/itembank_server, include/devstack and requirements-dev.txt are
# development tools; .dockerignore keeps them out of the build context).
# Used by docker-compose.yaml (tag imrt-airflow:local) and by helm-values.yaml (pushed to a registry). Where no
# registry is reachable, `make deploy-test` builds a stand-in of the base image first (deploy/base-images/airflow).
#
#   docker build -t imrt-airflow:local .
#
# Nothing secret is baked in: connections, variables and keys come from the environment at run time.
# No HEALTHCHECK here on purpose: each component (api-server, scheduler, ...) has its own check, set by the
# compose file or the Helm chart.

# Constraint: the tag's Airflow version must equal the apache-airflow pin in requirements.txt (3.3.2), and its
# Python the one requirements.txt was resolved with (3.11). tests/deployment checks both.
FROM apache/airflow:3.3.2-python3.11

# git: the sync reads item repositories with git over HTTP (Debian's git package).
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
USER airflow

# The runtime lock only (requirements.txt, `make lock`): every distribution of the image's Python environment,
# Airflow and its providers included, pinned with the sha256 of each file of its release, installed in pip's
# hash-checking mode (--require-hashes: a download whose hash the lock does not list is refused). requirements-dev.txt
# holds the same pins, so the image runs the versions the tests ran on; over the published image, whatever its own
# constraints chose differently is replaced by the lock's version. The constraint "apache-airflow==${AIRFLOW_VERSION}"
# (set by the base image) makes pip fail instead of replacing the image's Airflow if the lock and the base tag ever
# disagree; `pip check` fails the build on any conflict with what else the image ships. (`make deploy-test` checks
# that `pip freeze` in the built image is the lock: docs/deployment.md, "The image and its dependencies".)
COPY --chown=airflow:0 requirements.txt /tmp/imrt-requirements.txt
RUN echo "apache-airflow==${AIRFLOW_VERSION}" >/tmp/imrt-airflow-version.txt \
 && pip install --no-cache-dir --require-hashes -r /tmp/imrt-requirements.txt -c /tmp/imrt-airflow-version.txt \
 && pip check \
 && rm -f /tmp/imrt-requirements.txt /tmp/imrt-airflow-version.txt

# The runtime packages, without dependencies (they are in requirements.txt or come with Airflow). A regular (not
# editable) install, built in a scratch directory; pyproject.toml ships only imrt_sync and imrt_compat. The
# installed copies are what runs (docker-compose.yaml mounts nothing from the checkout; docker-compose.dev.yaml,
# for development, mounts ./include over /opt/airflow/include and puts it first on PYTHONPATH).
# These layers come after the dependency layer: a code change rebuilds only them.
# The smoke checks import no Airflow module (these packages import Airflow lazily), so no airflow.cfg with
# generated keys is written into the image.
COPY --chown=airflow:0 include/imrt_sync/ /opt/airflow/include/imrt_sync/
COPY --chown=airflow:0 include/imrt_compat/ /opt/airflow/include/imrt_compat/
COPY --chown=airflow:0 pyproject.toml /tmp/imrt-pyproject.toml
RUN build="$(mktemp -d)" \
 && cp /tmp/imrt-pyproject.toml "$build/pyproject.toml" \
 && cp -r /opt/airflow/include "$build/include" \
 && pip install --no-cache-dir --no-deps "$build" \
 && rm -rf "$build" /tmp/imrt-pyproject.toml \
 && python -c "import importlib.metadata as m, os; v = m.version('apache-airflow'); assert v == os.environ['AIRFLOW_VERSION'], v" \
 && python -c "import imrt_sync, imrt_compat" \
 && ! python -c "import itembank_server" 2>/dev/null \
 && ! python -c "import devstack" 2>/dev/null \
 && git --version

# The DAG and the plugin, in the default [core] dags_folder and plugins_folder of $AIRFLOW_HOME=/opt/airflow.
# The plugin (FastAPI apps /sync and /abandon, the root middleware, the DAG-run listener) must be loaded by the
# API server and the scheduler: with it in the image, every component has it.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/

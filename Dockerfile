# The project image: the official Apache Airflow image plus this repository's pinned requirements, its packages
# (include/: imrt_sync, imrt_compat, itembank_server, devstack), the DAG and the compatibility plugin.
# Used by docker-compose.yaml (tag imrt-airflow:local) and by helm-values.yaml (pushed to a registry).
#
#   docker build -t imrt-airflow:local .
#
# Nothing secret is baked in: connections, variables and keys come from the environment at run time.
# No HEALTHCHECK here on purpose: each component (api-server, scheduler, ...) has its own check, set by the
# compose file or the Helm chart.

# Constraint: the tag's Airflow version must equal the apache-airflow pin in requirements.txt (3.3.2), and its
# Python the one requirements.txt was resolved with (3.11). tests/deployment checks both.
FROM apache/airflow:3.3.2-python3.11

# git: the sync reads item repositories with git over HTTP, and the demo item bank serves them with
# `git http-backend` (both part of Debian's git package).
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
USER airflow

# The pinned set the project is tested with. requirements.txt pins apache-airflow==3.3.2 and every transitive
# dependency; naming "apache-airflow==${AIRFLOW_VERSION}" (set by the base image) as well makes pip fail instead
# of silently replacing the image's Airflow if the pin and the base tag ever disagree.
# Note: where a pin differs from the version the base image shipped, the pin wins (it is what the tests ran
# with). Providers the image ships but the project does not pin (fab, celery, cncf-kubernetes, ...) keep their
# versions; see the README's deployment section for the one known conflict (fab vs python-dateutil).
COPY --chown=airflow:0 requirements.txt /tmp/imrt-requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/imrt-requirements.txt \
 && rm -f /tmp/imrt-requirements.txt

# The project's own packages, without dependencies (they are all in requirements.txt). A regular (not
# editable) install, built in a scratch directory: the image works without the sources. The sources also stay
# in /opt/airflow/include, where docker-compose.yaml mounts ./include over them and puts them first on
# PYTHONPATH for development.
# The smoke checks import no Airflow module (these packages import Airflow lazily), so no airflow.cfg with
# generated keys is written into the image.
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 pyproject.toml /tmp/imrt-pyproject.toml
RUN build="$(mktemp -d)" \
 && cp /tmp/imrt-pyproject.toml "$build/pyproject.toml" \
 && cp -r /opt/airflow/include "$build/include" \
 && pip install --no-cache-dir --no-deps "$build" \
 && rm -rf "$build" /tmp/imrt-pyproject.toml \
 && python -c "import importlib.metadata as m, os; v = m.version('apache-airflow'); assert v == os.environ['AIRFLOW_VERSION'], v" \
 && python -c "import imrt_sync, imrt_compat, itembank_server" \
 && git --version

# The DAG and the plugin, in the default [core] dags_folder and plugins_folder of $AIRFLOW_HOME=/opt/airflow.
# The plugin (FastAPI apps /sync and /abandon, the root middleware, the DAG-run listener) must be loaded by the
# API server and the scheduler: with it in the image, every component has it.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/

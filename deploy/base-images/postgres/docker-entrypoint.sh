#!/usr/bin/env bash
# The postgres stand-in's entrypoint, written from the official image's documented behaviour
# (https://hub.docker.com/_/postgres, "Environment Variables", "Docker Secrets", "Initialization scripts").
set -Eeo pipefail

# VAR from VAR or VAR_FILE (read as root, before privileges are dropped), never both.
file_env() {
  local name="$1" default="${2:-}" file_name="${1}_FILE" value
  if [[ -n "${!name:-}" && -n "${!file_name:-}" ]]; then
    echo "error: both ${name} and ${file_name} are set (but are exclusive)" >&2
    exit 1
  fi
  value="${default}"
  if [[ -n "${!name:-}" ]]; then
    value="${!name}"
  elif [[ -n "${!file_name:-}" ]]; then
    value="$(<"${!file_name}")"
  fi
  export "${name}"="${value}"
  unset "${file_name}"
}

setup_environment() {
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "${POSTGRES_USER}"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
}

make_directories() {
  mkdir -p "${PGDATA}" /var/run/postgresql
  chmod 00700 "${PGDATA}"
  if [[ "$(id -u)" == "0" ]]; then
    chown -R postgres:postgres "${PGDATA}" /var/run/postgresql
  fi
}

initialize_cluster() {
  if [[ -z "${POSTGRES_PASSWORD}" && "${POSTGRES_HOST_AUTH_METHOD}" != "trust" ]]; then
    echo "error: database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE)" >&2
    exit 1
  fi
  # shellcheck disable=SC2086
  initdb --username="${POSTGRES_USER}" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD}") \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS}
  printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD}" >>"${PGDATA}/pg_hba.conf"
  echo "listen_addresses = '*'" >>"${PGDATA}/postgresql.conf"
  pg_ctl -D "${PGDATA}" -o "-c listen_addresses='' -p 5432" -w start
  if [[ "${POSTGRES_DB}" != "postgres" ]]; then
    PGPASSWORD="${POSTGRES_PASSWORD}" psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --no-password \
      --dbname postgres --set db="${POSTGRES_DB}" <<<'CREATE DATABASE :"db";'
  fi
  local script
  for script in /docker-entrypoint-initdb.d/*; do
    case "${script}" in
      *.sh) echo "running ${script}"; . "${script}" ;;
      *.sql) echo "running ${script}"; PGPASSWORD="${POSTGRES_PASSWORD}" psql -v ON_ERROR_STOP=1 \
               --username "${POSTGRES_USER}" --no-password --dbname "${POSTGRES_DB}" -f "${script}" ;;
      *) ;;
    esac
  done
  pg_ctl -D "${PGDATA}" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
}

if [[ "${1:0:1}" == "-" ]]; then
  set -- postgres "$@"
fi
if [[ "$1" == "postgres" ]]; then
  setup_environment
  make_directories
  if [[ "$(id -u)" == "0" ]]; then
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
  fi
  if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
    initialize_cluster
  fi
  unset POSTGRES_PASSWORD
fi
exec "$@"

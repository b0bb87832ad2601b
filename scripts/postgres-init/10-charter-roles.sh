#!/bin/sh
# The postgres service runs this once, on an empty data volume (docker-entrypoint-initdb.d), as the
# cluster's superuser. Two roles and the database, as the README's "Running on PostgreSQL and Redis"
# describes:
#   charter_owner  owns the database, its schema and (once migrated) every table; only the one-shot
#                  `migrate` service connects as it (DATABASE_OWNER_URL)
#   charter_app    web, worker and beat connect as it (DATABASE_URL): it owns nothing; `manage.py
#                  migrate` grants it DML on the application's tables and, on the audit log, SELECT and
#                  INSERT only (plus UPDATE of the one chain-head row)
# Neither is a superuser nor may create roles or databases.
set -eu
: "${CHARTER_OWNER_PASSWORD:?}" "${CHARTER_APP_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_password="$CHARTER_OWNER_PASSWORD" -v app_password="$CHARTER_APP_PASSWORD" <<'SQL'
CREATE ROLE charter_owner LOGIN PASSWORD :'owner_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE charter_app LOGIN PASSWORD :'app_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE charter OWNER charter_owner;
REVOKE ALL ON DATABASE charter FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE charter TO charter_app;
\connect charter
ALTER SCHEMA public OWNER TO charter_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO charter_app;
SQL

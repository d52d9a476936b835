#!/usr/bin/env bash
# Starts this machine's PostgreSQL server and makes a role and a database for archproof's
# shared studies, then prints the URL to give workers (--storage) and the tests
# (ARCHPROOF_TEST_POSTGRES). Needs root (or sudo) and Debian's postgresql package, which it
# installs if missing. The role may create databases (the tests make scratch ones).
#
#   scripts/start-postgres.sh [ROLE] [PASSWORD] [DATABASE]
#
# Workers on other machines also need the server to listen beyond localhost
# (listen_addresses in postgresql.conf) and a host line for them in pg_hba.conf.
set -euo pipefail
role="${1:-archproof}"
password="${2:-archproof}"
db="${3:-archproof}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! command -v pg_lsclusters >/dev/null; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi
read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
if [ "$status" != "online" ]; then
    $sudo pg_ctlcluster "$version" "$cluster" start
fi
as_postgres="sudo -u postgres"
if [ -z "$sudo" ]; then as_postgres="runuser -u postgres --"; fi
psql_() { (cd / && $as_postgres psql -q -v ON_ERROR_STOP=1 -p "$port" "$@"); }
exists() { psql_ -tAc "$1" | grep -q 1; }
if exists "SELECT 1 FROM pg_roles WHERE rolname = '$role'"; then
    psql_ -c "ALTER ROLE $role WITH LOGIN CREATEDB PASSWORD '$password'"
else
    psql_ -c "CREATE ROLE $role WITH LOGIN CREATEDB PASSWORD '$password'"
fi
if ! exists "SELECT 1 FROM pg_database WHERE datname = '$db'"; then
    psql_ -c "CREATE DATABASE $db OWNER $role"
fi
echo "postgresql://$role:$password@127.0.0.1:$port/$db"

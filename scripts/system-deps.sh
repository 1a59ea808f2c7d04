#!/usr/bin/env bash
# Installs and starts the system parts lomsong's tests and demo use, from Debian's packages:
# PostgreSQL (a server answering on 127.0.0.1:${LOMSONG_PG_PORT:-5432} with trust auth and a
# database "test"), Prometheus with promtool, Alertmanager, blackbox_exporter and Chromium.
# Idempotent: anything already present is left alone. Needs root (or sudo) for apt-get.
set -euo pipefail

PG_PORT="${LOMSONG_PG_PORT:-5432}"
want=()
command -v promtool >/dev/null || want+=(prometheus)
command -v prometheus >/dev/null || want+=(prometheus)
command -v prometheus-alertmanager >/dev/null || want+=(prometheus-alertmanager)
command -v prometheus-blackbox-exporter >/dev/null || want+=(prometheus-blackbox-exporter)
command -v chromium >/dev/null || want+=(chromium)
command -v ip >/dev/null || want+=(iproute2)
pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
pg_ready || { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql); }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ${#want[@]} -gt 0 ]; then
  echo "system-deps: installing ${want[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${want[@]}" | sort -u) >/dev/null
fi

if ! pg_ready; then
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! as_root pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3==p {found=1} END {exit !found}'; then
    echo "system-deps: creating PostgreSQL $ver cluster 'lomsong' on 127.0.0.1:$PG_PORT (trust auth)"
    as_root pg_createcluster "$ver" lomsong -p "$PG_PORT" -- --auth-local=trust --auth-host=trust >/dev/null
  fi
  cluster=$(as_root pg_lsclusters -h | awk -v p="$PG_PORT" '$3==p {print $1" "$2; exit}')
  echo "system-deps: starting PostgreSQL cluster $cluster"
  # shellcheck disable=SC2086
  as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  pg_ready || { echo "system-deps: PostgreSQL did not start on port $PG_PORT" >&2; exit 1; }
fi
if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
  createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres test
fi
echo "system-deps: ok (PostgreSQL on 127.0.0.1:$PG_PORT, $(promtool --version 2>&1 | head -1 | cut -d' ' -f1-3))"

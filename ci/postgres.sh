# Starts PostgreSQL (Debian's postgresql, as user postgres) on a free
# 127.0.0.1 port for the tests, with a user and a database for them, and
# exports JFS_TEST_POSTGRES. Source it; the server is stopped (by its PID)
# when the sourcing shell exits. A JFS_TEST_POSTGRES already set is used as
# it is.

if [ -z "${JFS_TEST_POSTGRES:-}" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$pg_bin" ] || { log "PostgreSQL server not installed (ci/install.sh installs it)"; exit 1; }
  pg_port=$(free_port)
  pg_dir=$(mktemp -d /tmp/jfs-ci-postgres.XXXXXX)
  ci_dirs+=("$pg_dir")
  chown postgres: "$pg_dir"
  runuser -u postgres -- "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >"$pg_dir/initdb.log" 2>&1 \
    || { log "initdb failed; see $pg_dir/initdb.log"; exit 1; }
  # Password logins over TCP (the tests check a wrong password).
  echo "host all all 127.0.0.1/32 scram-sha-256" >"$pg_dir/data/pg_hba.conf"
  echo "local all postgres trust" >>"$pg_dir/data/pg_hba.conf"
  runuser -u postgres -- "$pg_bin/postgres" -D "$pg_dir/data" -k "$pg_dir" -h 127.0.0.1 -p "$pg_port" \
    -c max_connections=300 -c fsync=on -c synchronous_commit=on >"$pg_dir/postgres.log" 2>&1 &
  ci_pids+=($!)
  for _ in $(seq 1 100); do
    runuser -u postgres -- psql -h "$pg_dir" -p "$pg_port" -U postgres -c 'select 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  runuser -u postgres -- psql -q -h "$pg_dir" -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 \
    -c "CREATE USER jfs WITH PASSWORD 'jfs-test-pass'" \
    -c "CREATE DATABASE jfs_test OWNER jfs" -c "CREATE DATABASE juicefs_bench OWNER jfs" >/dev/null \
    || { log "PostgreSQL did not start; see $pg_dir/postgres.log"; exit 1; }
  export JFS_TEST_POSTGRES="postgres://jfs:jfs-test-pass@127.0.0.1:$pg_port/jfs_test?sslmode=disable"
  log "PostgreSQL at 127.0.0.1:$pg_port ($pg_dir), pid ${ci_pids[-1]}"
fi

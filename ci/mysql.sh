# Starts MariaDB (Debian's mariadb-server; MySQL works the same) on a free
# 127.0.0.1 port for the tests, with a user and a database for them, and
# exports JFS_TEST_MYSQL. Source it; the server is stopped (by its PID) when
# the sourcing shell exits. A JFS_TEST_MYSQL already set is used as it is.

if [ -z "${JFS_TEST_MYSQL:-}" ]; then
  command -v mariadbd >/dev/null 2>&1 || { log "mariadbd not installed (ci/install.sh installs it)"; exit 1; }
  my_port=$(free_port)
  my_dir=$(mktemp -d /tmp/jfs-ci-mysql.XXXXXX)
  ci_dirs+=("$my_dir")
  chown mysql: "$my_dir"
  mariadb-install-db --user=mysql --datadir="$my_dir/data" --auth-root-authentication-method=socket \
    >"$my_dir/install.log" 2>&1 || { log "mariadb-install-db failed; see $my_dir/install.log"; exit 1; }
  mariadbd --user=mysql --datadir="$my_dir/data" --socket="$my_dir/sock" --pid-file="$my_dir/pid" \
    --port="$my_port" --bind-address=127.0.0.1 --skip-name-resolve --max-connections=300 \
    --innodb-flush-log-at-trx-commit=1 --log-error="$my_dir/error.log" >/dev/null 2>&1 &
  ci_pids+=($!)
  for _ in $(seq 1 150); do
    mariadb --socket="$my_dir/sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  mariadb --socket="$my_dir/sock" -uroot -e "
    CREATE USER 'jfs'@'127.0.0.1' IDENTIFIED BY 'jfs-test-pass';
    CREATE DATABASE jfs_test; CREATE DATABASE juicefs_bench;
    GRANT ALL ON jfs_test.* TO 'jfs'@'127.0.0.1';
    GRANT ALL ON juicefs_bench.* TO 'jfs'@'127.0.0.1';" \
    || { log "MariaDB did not start; see $my_dir/error.log"; exit 1; }
  export JFS_TEST_MYSQL="mysql://jfs:jfs-test-pass@(127.0.0.1:$my_port)/jfs_test"
  log "MariaDB at 127.0.0.1:$my_port ($my_dir), pid ${ci_pids[-1]}"
fi

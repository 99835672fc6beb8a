# Starts redis-server (Debian's) on a free 127.0.0.1 port for the tests and
# exports JFS_TEST_REDIS. Source it; the server is stopped (by its PID) when
# the sourcing shell exits. A JFS_TEST_REDIS already set is used as it is.
#
# The default user has a password (the URL form redis://:PASS@host/db of
# servers before 6.0) and an ACL user `tom` another (redis://tom:PASS@...),
# so the tests can try both forms and a wrong password.

if [ -z "${JFS_TEST_REDIS:-}" ]; then
  redis_port=$(free_port)
  redis_dir="$PWD/target/redis"
  rm -rf "$redis_dir"
  mkdir -p "$redis_dir"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$redis_dir" \
    --requirepass jfs-test-pass --user tom on '>tom-pass' '~*' '&*' '+@all' \
    --appendonly yes --appendfsync everysec --save '' --maxmemory-policy noeviction \
    > "$redis_dir/redis.log" 2>&1 &
  ci_pids+=($!)
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" -a jfs-test-pass --no-auth-warning ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" -a jfs-test-pass --no-auth-warning ping 2>/dev/null | grep -q PONG \
    || { log "redis-server did not start; see $redis_dir/redis.log"; exit 1; }
  export JFS_TEST_REDIS="redis://:jfs-test-pass@127.0.0.1:$redis_port/1"
  log "redis-server at 127.0.0.1:$redis_port, pid ${ci_pids[-1]}"
fi

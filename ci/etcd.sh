# Starts a 3-member etcd cluster on 127.0.0.1 (Debian's etcd-server) for the
# tests and exports JFS_TEST_ETCD. Source it; the members are stopped (by
# their PIDs) when the sourcing shell exits. Ports are picked free; data
# lives under target/etcd.

etcd_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
etcd_dir="$PWD/target/etcd"
rm -rf "$etcd_dir"
mkdir -p "$etcd_dir"
etcd_cluster=""
etcd_clients=()
etcd_peers=()
for i in 1 2 3; do
  etcd_clients+=("$(etcd_free_port)")
  etcd_peers+=("$(etcd_free_port)")
  etcd_cluster+="${etcd_cluster:+,}m$i=http://127.0.0.1:${etcd_peers[$((i - 1))]}"
done
etcd_pids=()
for i in 1 2 3; do
  c=${etcd_clients[$((i - 1))]}
  p=${etcd_peers[$((i - 1))]}
  etcd --name "m$i" --data-dir "$etcd_dir/m$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$etcd_cluster" --initial-cluster-state new --initial-cluster-token jfs-test \
    > "$etcd_dir/m$i.log" 2>&1 &
  etcd_pids+=($!)
done
ci_pids+=("${etcd_pids[@]}")
etcd_endpoints="127.0.0.1:${etcd_clients[0]},127.0.0.1:${etcd_clients[1]},127.0.0.1:${etcd_clients[2]}"
for _ in $(seq 1 100); do
  ETCDCTL_API=3 etcdctl --endpoints "$etcd_endpoints" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
ETCDCTL_API=3 etcdctl --endpoints "$etcd_endpoints" endpoint health >/dev/null 2>&1 \
  || { log "etcd cluster did not become healthy; see $etcd_dir/*.log"; exit 1; }
export JFS_TEST_ETCD="etcd://$etcd_endpoints/jfs-test"
log "etcd cluster (3 members) at $JFS_TEST_ETCD, pids ${etcd_pids[*]}"

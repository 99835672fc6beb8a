# Helpers shared by the ci/ scripts. Each installs only what is missing.

log() { printf '[ci] %s\n' "$*" >&2; }

# Servers the ci/ scripts start: stopped by PID when the shell exits, then
# their data directories removed.
ci_pids=()
ci_dirs=()
ci_stop_servers() {
  [ ${#ci_pids[@]} -eq 0 ] || kill "${ci_pids[@]}" 2>/dev/null || true
  for pid in "${ci_pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  [ ${#ci_dirs[@]} -eq 0 ] || rm -rf "${ci_dirs[@]}"
}
trap ci_stop_servers EXIT

# free_port: a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

apt_updated=0
# need_apt PACKAGE...: installs the Debian packages that are not installed yet.
need_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_cargo_tool BINARY CRATE [ARGS...]: cargo-installs CRATE unless BINARY is on PATH.
need_cargo_tool() {
  local bin=$1 crate=$2
  shift 2
  command -v "$bin" >/dev/null 2>&1 && return 0
  log "cargo install $crate"
  cargo install --locked --quiet "$crate" "$@"
}

need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || { log "cargo not found: install a Rust toolchain (rustup) first"; exit 1; }
}

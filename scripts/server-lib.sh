# Shared by scripts/services and scripts/cluster: servers run as ordinary processes on loopback, as an
# unprivileged user when root, and the ClickHouse server's start, stop and status. Sourced, never run.
#
# The caller sets DATA_DIR, LOG_DIR, HOST and WAIT_SECS; the ClickHouse functions act on the server that
# CH_NAME, CH_DIR, CH_PID, CH_LOG, CH_ERRLOG, CH_STDOUT, CH_HTTP_PORT and CH_TCP_PORT describe, and add
# CH_EXTRA_CONFIG (XML) to its config.xml.

# ---------------------------------------------------------------- helpers

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# fail NAME LOG MESSAGE: one-line error, then the tail of the log, exit 1.
fail() {
    echo "$(basename "$0"): $1 failed: $3 (log: $2)" >&2
    [[ -f $2 ]] && tail -n 20 "$2" | sed 's/^/    /' >&2
    exit 1
}

if [[ $(id -u) -eq 0 ]]; then
    SVC_USER=${AMIGO_SERVICE_USER:-amigo-svc}
else
    SVC_USER=$(id -un)
fi

# Create the unprivileged service user when running as root.
ensure_user() {
    [[ $(id -u) -eq 0 ]] || return 0
    id -u "$SVC_USER" >/dev/null 2>&1 && return 0
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$SVC_USER"
}

# as_svc CMD...: run CMD as the service user, from a directory it can read.
as_svc() {
    if [[ $(id -u) -ne 0 ]]; then
        (cd "$DATA_DIR" && "$@")
    elif command -v runuser >/dev/null; then
        (cd "$DATA_DIR" && runuser -u "$SVC_USER" -- "$@")
    else
        (cd "$DATA_DIR" && su -s /bin/sh "$SVC_USER" -c "$(printf '%q ' "$@")")
    fi
}

# svc_dir DIR [MODE]: create DIR owned by the service user.
svc_dir() {
    mkdir -p "$1"
    [[ $(id -u) -eq 0 ]] && chown "$SVC_USER:" "$1"
    chmod "${2:-755}" "$1"
}

prepare_dirs() {
    mkdir -p "$DATA_DIR"
    ensure_user
    svc_dir "$LOG_DIR"
    as_svc test -w "$LOG_DIR" ||
        die "user $SVC_USER cannot write $LOG_DIR (is a parent folder of $DATA_DIR closed to other users?)"
}

# http_post PORT PATH [BODY]: print the response body; non-zero unless HTTP 200.
# Timeout: $HTTP_TIMEOUT seconds (default 30).
# An empty BODY sends a GET (ClickHouse 18.16 answers POST /ping with "Empty query").
# Uses curl, else python3, else bash's /dev/tcp.
http_post() {
    local port=$1 path=$2 body=${3:-} timeout=${HTTP_TIMEOUT:-30}
    if command -v curl >/dev/null; then
        local out code data=()
        [[ -n $body ]] && data=(--data-binary "$body")
        out=$(mktemp)
        code=$(curl -sS --max-time "$timeout" -o "$out" -w '%{http_code}' \
            "${data[@]}" "http://$HOST:$port$path" 2>/dev/null) || code=000
        cat "$out"; rm -f "$out"
        [[ $code == 200 ]]
    elif command -v python3 >/dev/null; then
        python3 - "$HOST" "$port" "$path" "$body" "$timeout" <<'PY'
import sys, urllib.request, urllib.error
host, port, path, body, timeout = sys.argv[1:]
try:
    data = body.encode() if body else None   # empty body: GET (18.16's /ping is GET only)
    r = urllib.request.urlopen(f"http://{host}:{port}{path}", data=data, timeout=float(timeout))
    sys.stdout.write(r.read().decode()); sys.exit(0)
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode()); sys.exit(1)
except Exception:
    sys.exit(1)
PY
    else
        local status line LC_ALL=C   # byte length for Content-Length
        local method=POST
        [[ -n $body ]] || method=GET
        exec 3<>"/dev/tcp/$HOST/$port" 2>/dev/null || return 1
        printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
            "$method" "$path" "$HOST" "${#body}" "$body" >&3
        IFS= read -r -t "$timeout" status <&3 || { exec 3<&-; return 1; }
        while IFS= read -r -t "$timeout" line <&3 && [[ $line != $'\r' ]]; do :; done
        cat <&3; exec 3<&-
        [[ $status == *" 200 "* ]]
    fi
}

# Sets CH_BIN: the command that runs the server (Debian's clickhouse-server
# lives in /usr/sbin, which may not be on PATH; upstream has `clickhouse server`).
ch_find_bin() {
    if command -v clickhouse-server >/dev/null; then
        CH_BIN=(clickhouse-server)
    elif [[ -x /usr/sbin/clickhouse-server ]]; then
        CH_BIN=(/usr/sbin/clickhouse-server)
    elif command -v clickhouse >/dev/null; then
        CH_BIN=(clickhouse server)
    else
        die "clickhouse-server not found (apt-get install clickhouse-server)"
    fi
}

ch_pid() { cat "$CH_PID" 2>/dev/null || true; }

ch_running() {
    local pid
    pid=$(ch_pid)
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q clickhouse
}

ch_answers() { [[ $(HTTP_TIMEOUT=2 http_post "$CH_HTTP_PORT" /ping 2>/dev/null) == Ok.* ]]; }
ch_query()   { http_post "$CH_HTTP_PORT" / "$1"; }

# Writes config.xml and users.xml (rewritten on every start, so port changes apply).
ch_write_config() {
    svc_dir "$CH_DIR"
    local d
    for d in data tmp user_files format_schemas; do svc_dir "$CH_DIR/$d" 750; done
    cat >"$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<!-- Generated by $(basename "$0"); edits are overwritten on start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOG</log>
        <errorlog>$CH_ERRLOG</errorlog>
        <size>100M</size>
        <count>3</count>
        <console>false</console>
    </logger>

    <listen_host>$HOST</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>

    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>536870912</mark_cache_size>

    <!-- Paths must end with a slash. -->
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>

    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>

    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>

    <!-- Test servers: allow dropping tables and partitions of any size. -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
$CH_EXTRA_CONFIG
</yandex>
XML
    cat >"$CH_DIR/users.xml" <<'XML'
<?xml version="1.0"?>
<!-- Generated by scripts/services or scripts/cluster; edits are overwritten on start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>10000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
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
XML
    chmod 644 "$CH_DIR/config.xml" "$CH_DIR/users.xml"
}

ch_version() { ch_query 'SELECT version()' 2>/dev/null | tr -d '\n' || true; }

ch_start() {
    if ch_running && ch_answers; then
        ch_query 'CREATE DATABASE IF NOT EXISTS amigo' >/dev/null ||
            fail "$CH_NAME" "$CH_ERRLOG" "CREATE DATABASE amigo"
        echo "$CH_NAME: already running on $HOST:$CH_HTTP_PORT (http), $HOST:$CH_TCP_PORT (tcp) (pid $(ch_pid)), version $(ch_version)"
        return 0
    fi
    if ! ch_running; then
        rm -f "$CH_PID"
        ! ch_answers ||
            die "$CH_NAME failed: another server already answers on $HOST:$CH_HTTP_PORT (no live pid in $CH_PID)"
        ch_find_bin
        ch_write_config
        # setsid --fork: detached in its own session (no runuser parent left
        # behind to forward the caller's signals). 18.16 writes --pid-file only
        # in --daemon mode, so the shell writes its own pid and execs the server.
        # shellcheck disable=SC2016
        as_svc setsid --fork sh -c 'echo $$ >"$0" && exec "$@"' "$CH_PID" \
            "${CH_BIN[@]}" --config-file="$CH_DIR/config.xml" \
            </dev/null >>"$CH_STDOUT" 2>&1
    fi
    local log=$CH_ERRLOG deadline=$((SECONDS + WAIT_SECS))
    while ((SECONDS < deadline)); do
        sleep 0.2
        if ! ch_running; then   # exited (bad config, port taken, ...)
            [[ -s $log ]] || log=$CH_STDOUT
            fail "$CH_NAME" "$log" "server exited during startup"
        fi
        ch_answers && break
    done
    if ! ch_answers; then
        [[ -s $log ]] || log=$CH_STDOUT
        fail "$CH_NAME" "$log" "no answer on http://$HOST:$CH_HTTP_PORT/ping within ${WAIT_SECS} s"
    fi
    ch_query 'CREATE DATABASE IF NOT EXISTS amigo' >/dev/null ||
        fail "$CH_NAME" "$CH_ERRLOG" "CREATE DATABASE amigo"
    echo "$CH_NAME: started on $HOST:$CH_HTTP_PORT (http), $HOST:$CH_TCP_PORT (tcp) (pid $(ch_pid)), version $(ch_version)"
}

ch_stop() {
    if ! ch_running; then
        rm -f "$CH_PID"
        echo "$CH_NAME: not running"
        return 0
    fi
    local pid deadline=$((SECONDS + 15))
    pid=$(ch_pid)
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "$CH_NAME: did not exit within 15 s of SIGTERM, sent SIGKILL"
        sleep 0.5
    fi
    rm -f "$CH_PID"
    echo "$CH_NAME: stopped"
}

ch_status() {
    if ! ch_running; then
        echo "$CH_NAME: stopped (http port $CH_HTTP_PORT, tcp port $CH_TCP_PORT)"
    elif ch_answers; then
        echo "$CH_NAME: running on $HOST:$CH_HTTP_PORT (http), $HOST:$CH_TCP_PORT (tcp) (pid $(ch_pid))"
    else
        echo "$CH_NAME: running (pid $(ch_pid)) but not answering on $HOST:$CH_HTTP_PORT"
    fi
}


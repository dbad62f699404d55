# deploy/local/lib.sh — helpers shared by deploy/local/{install,infra,stack,fresh-check}.
# Sourced, not run. Callers set TAG (the prefix of their messages) before sourcing.
# shellcheck shell=bash

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
# Runtime state (pids, logs, data); TA_LOCAL_DIR moves it, e.g. for the scripts' own tests.
LOCAL_DIR="${TA_LOCAL_DIR:-$REPO_ROOT/.data}"
# shellcheck disable=SC2034 # used by the scripts that source this file
LOG_DIR="$LOCAL_DIR/logs"
TA_TOOLS_DIR="${TA_TOOLS_DIR:-$HOME/.cache/tiny-analytics}"

say() { printf '[%s] %s\n' "${TAG:-local}" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "${TAG:-local}" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "${TAG:-local}" "$*" >&2
    exit 1
}

# Path for messages: relative when the caller's cwd is the repo root, else absolute.
rel() {
    if [[ $PWD == "$REPO_ROOT" && $1 == "$REPO_ROOT"/* ]]; then
        printf '%s' "${1#"$REPO_ROOT"/}"
    else
        printf '%s' "$1"
    fi
}

# Run a command as root (directly, or via sudo).
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (no sudo available)"
    fi
}

# TCP connect test with a hard timeout (a /dev/tcp connect to a black hole can hang).
port_open() { # host port
    # shellcheck disable=SC2016 # $0/$1 expand in the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# Does an HTTP GET of the url succeed (and its body start with the expected prefix)?
http_ok() { # url [expected body prefix]
    local body
    body=$(curl -sf --max-time 2 "$1" 2>/dev/null) || return 1
    [[ -z ${2:-} || $body == "$2"* ]]
}

# Who listens on a local TCP port, for messages (best effort).
port_owner() { # port
    local out=""
    if command -v ss >/dev/null 2>&1; then
        out=$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1 || true)
    fi
    printf '%s' "${out:-unknown process}"
}

# Big-endian integers as printf escapes (`\x00\x12`): printf turns them into the bytes, which a
# bash string could not hold (it cannot hold a NUL byte).
be16() { printf '\\x%02x\\x%02x' $(($1 >> 8 & 255)) $(($1 & 255)); }
be32() { be16 $(($1 >> 16 & 65535)) && be16 $(($1 & 65535)); }

# Does a Kafka broker answer on host:port? An open port does not show that (another program
# may hold it, or the broker may not serve yet), so send one request and check the answer.
#
# The request is ApiVersions (api key 18) in version 0: the first request of every Kafka client,
# which any broker answers, even before authentication. Wire format
# (https://kafka.apache.org/protocol#protocol_messages), all integers big-endian:
#   request:  int32 size of the rest | int16 api_key | int16 api_version
#             | int32 correlation_id | int16 length of client_id | client_id bytes
#   response: int32 size of the rest | int32 correlation_id | int16 error_code | ...
# The broker answers when the response echoes our correlation id with error code 0 (NONE).
kafka_answers() { # host port
    local api_key=18 api_version=0 correlation_id=7 client_id=ta-infra
    local header request expected answer
    header=$(be16 $api_key)$(be16 $api_version)$(be32 $correlation_id)$(be16 ${#client_id})
    request=$(be32 $((2 + 2 + 4 + 2 + ${#client_id})))$header$client_id
    expected=$(printf '%08x%04x' $correlation_id 0)
    # shellcheck disable=SC2016 # $0..$2 expand in the inner shell
    answer=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "$2" >&3
        head -c 10 <&3 | od -An -tx1
    ' "$1" "$2" "$request" 2>/dev/null) || return 1
    answer=${answer//[[:space:]]/}
    # Skip the size (8 hex digits); then the correlation id (8) and the error code (4).
    [[ ${answer:8:12} == "$expected" ]]
}

# Does any broker of a comma-separated bootstrap list (host:port, optionally scheme://)
# accept a TCP connection?
kafka_brokers_reachable() { # list
    local b hp host port
    local -a brokers
    IFS=',' read -r -a brokers <<<"$1"
    for b in "${brokers[@]}"; do
        hp=${b//[[:space:]]/}
        hp=${hp#*://}
        host=${hp%:*}
        port=${hp##*:}
        host=${host#[}
        host=${host%]}
        [[ -n $host && $port =~ ^[0-9]+$ ]] || continue
        port_open "$host" "$port" && return 0
    done
    return 1
}

# Is this pid a live process running the expected executable?
# Not when it is gone, when it is a zombie (state Z: a SIGKILLed server whose parent has not
# reaped it yet still answers `kill -0`), or when the pid now belongs to another program.
pid_alive() { # pid program-name
    local pid=$1 argv0
    pid_running "$pid" || return 1
    # The program is argv[0]'s file name, not a word anywhere in the command line (a reused pid
    # running `tail -f .data/logs/ta-edge.log` is not ta-edge).
    argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) || return 1
    [[ -n $argv0 && ${argv0##*/} == "$2" ]]
}

# Is this pid a process that has not exited (whatever it runs)? For a child just started,
# which may not have exec'd its program yet.
pid_running() { # pid
    local stat state
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # Field 3, after the command name in parentheses (which may itself hold spaces or ')').
    state=${stat##*) }
    state=${state%% *}
    [[ $state != Z && $state != X ]]
}

read_pid() { # pid-file -> prints pid or nothing
    if [[ -f $1 ]]; then tr -dc '0-9' <"$1" || true; fi
}

# Close every inherited descriptor above 2 in the current (sub)shell: lock fds (else a server
# would hold the lock forever) and whatever the caller leaked to us (else e.g. a Makefile or
# CI step reading a pipe would wait for the server to exit).
close_inherited_fds() {
    local f fd
    for f in /proc/"$BASHPID"/fd/*; do
        fd=${f##*/}
        [[ $fd =~ ^[0-9]+$ ]] || continue
        ((fd > 2 && fd != 255)) || continue # 255: bash's own script fd, close-on-exec
        eval "exec $fd>&-" 2>/dev/null || true
    done
}

# The broker version the project builds and runs (deploy/local/install, infra, images/build).
# shellcheck disable=SC2034 # used by the scripts that source this file
TANSU_VERSION=0.6.0

clickhouse_server_bin() {
    command -v clickhouse-server 2>/dev/null ||
        { [[ -x /usr/sbin/clickhouse-server ]] && printf '/usr/sbin/clickhouse-server'; } ||
        { [[ -x /usr/bin/clickhouse-server ]] && printf '/usr/bin/clickhouse-server'; } ||
        return 1
}

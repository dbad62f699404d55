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

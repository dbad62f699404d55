#!/bin/sh
# deploy/central/kafka/redpanda-init.sh — one-shot security set-up of the central Redpanda (v24.2).
# Runs (through ./init) in the `kafka-init` compose service (the Redpanda image, for rpk) once the broker is
# healthy; safe to run again at any time (every step checks or is a no-op when already done).
# Written from the Redpanda 24.2 documentation and the v24.2.7 sources; not run on the development
# machines (no Docker engine there).
#
# It makes, as the superuser ta-admin (SCRAM-SHA-512):
#   users    ta-admin (the superuser), loader, edge-<region> for each region: SCRAM-SHA-512, the
#            password being the first line of /run/secrets/kafka/<user> (a changed file updates the
#            user's password at the next run);
#   cluster  superusers contains ta-admin, kafka_enable_authorization and enable_sasl true,
#            auto_create_topics_enabled false (already so on a cluster started with
#            .bootstrap.yaml), then admin_api_require_auth true;
#   topic    $TA_KAFKA_TOPIC (events.enriched) with $TA_KAFKA_TOPIC_PARTITIONS (6) partitions,
#            replication factor 1, when missing (an existing topic is left as it is);
#   ACLs     edge-<region>: WRITE and DESCRIBE on that topic; loader: READ and DESCRIBE on it (it
#            keeps its offsets in ClickHouse: no consumer group, so no group ACL). Then it checks
#            that each of these users holds exactly those ACLs and that no ACL is granted to the
#            wildcard principal User:*; anything more stops the script (it deletes nothing).
#
# The first superuser: SASL is required on both Kafka listeners from the first start, so no Kafka
# client can do anything before a user exists. Users are managed through the Admin API, which in
# v24.2 asks for no credentials while admin_api_require_auth is false (as .bootstrap.yaml leaves
# it); a request with credentials it cannot verify is then served as anonymous. So ta-admin is
# created through the Admin API first, and every later call authenticates as ta-admin. The last
# step turns admin_api_require_auth on (opt out: TA_REDPANDA_ADMIN_REQUIRE_AUTH=false); from then
# on the Admin API takes ta-admin's credentials only (the health endpoint stays open).
#
# Environment:
#   TA_EDGE_REGIONS                 regions, space separated, e.g. "eu us" (required; may be
#                                   empty only if TA_EDGE_REGIONS_NONE=true)
#   TA_KAFKA_TOPIC                  default events.enriched
#   TA_KAFKA_TOPIC_PARTITIONS       default 6
#   TA_REDPANDA_SECRETS_DIR         default /run/secrets/kafka (files ta-admin, loader, edge-<region>)
#   TA_REDPANDA_ADMIN_REQUIRE_AUTH  true (default) | false
#   RPK_BROKERS, RPK_ADMIN_HOSTS    default kafka:9092 (the internal listener) and
#                                   kafka:9644
# Passwords reach rpk through RPK_PASS (ta-admin, in this process's environment) and through
# --new-password=... (the user being created or updated: rpk takes it only as an argument, so it
# is visible in the process list of this container while that one rpk call runs). None is
# printed: no `set -x`, rpk's output of the user commands is discarded, and rpk prints a password
# only when it generated one, which never happens here (an empty password file is refused first).
set -eu
set -f # no pathname expansion: region names come from the environment

ADMIN_USER=ta-admin
MECHANISM=SCRAM-SHA-512
TOPIC=${TA_KAFKA_TOPIC:-events.enriched}
PARTITIONS=${TA_KAFKA_TOPIC_PARTITIONS:-6}
SECRETS_DIR=${TA_REDPANDA_SECRETS_DIR:-/run/secrets/kafka}
REQUIRE_ADMIN_AUTH=${TA_REDPANDA_ADMIN_REQUIRE_AUTH:-true}

log() { printf 'redpanda-init: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# --- settings ---------------------------------------------------------------------------------

if [ -z "${TA_EDGE_REGIONS+set}" ]; then
    die 'TA_EDGE_REGIONS is not set (the edge regions, space separated, e.g. "eu us")'
fi
REGIONS=$(for region in $TA_EDGE_REGIONS; do printf '%s\n' "$region"; done | sort -u)
if [ -z "$REGIONS" ] && [ "${TA_EDGE_REGIONS_NONE:-false}" != true ]; then
    die 'TA_EDGE_REGIONS is empty (set TA_EDGE_REGIONS_NONE=true to run without edge users)'
fi
for region in $REGIONS; do
    case $region in
        -* | *[!a-z0-9-]*) die "region \"$region\": use lower-case letters, digits and '-' only" ;;
    esac
done
case $PARTITIONS in
    '' | *[!0-9]* | 0*) die "TA_KAFKA_TOPIC_PARTITIONS must be a positive integer (got \"$PARTITIONS\")" ;;
esac
case $TOPIC in
    '' | *[!A-Za-z0-9._-]*) die "TA_KAFKA_TOPIC \"$TOPIC\" is not a valid topic name" ;;
esac
case $REQUIRE_ADMIN_AUTH in
    true | false) ;;
    *) die "TA_REDPANDA_ADMIN_REQUIRE_AUTH must be true or false (got \"$REQUIRE_ADMIN_AUTH\")" ;;
esac

# The password of a user: the first line of its file, trailing CRs removed (what ta-loader and
# ta-edge read from TA_KAFKA_SASL_PASSWORD_FILE). Sets SECRET; never prints it.
CR=$(printf '\r')
read_secret() {
    secret_file=$SECRETS_DIR/$1
    [ -f "$secret_file" ] || die "no password file $secret_file (user $1)"
    [ -r "$secret_file" ] || die "cannot read $secret_file (user $1): check its owner and mode"
    SECRET=
    IFS= read -r SECRET <"$secret_file" || :
    while :; do
        case $SECRET in
            *"$CR") SECRET=${SECRET%"$CR"} ;;
            *) break ;;
        esac
    done
    [ -n "$SECRET" ] || die "$secret_file is empty (its first line is user $1's password)"
}

# Every rpk call authenticates as ta-admin with SCRAM-SHA-512: RPK_USER, RPK_PASS and
# RPK_SASL_MECHANISM are rpk's environment forms of -X user=, -X pass= and -X sasl.mechanism=
# (kept out of the command line). They also serve as HTTP basic auth on the Admin API.
read_secret "$ADMIN_USER"
RPK_PASS=$SECRET
export RPK_PASS
RPK_USER=$ADMIN_USER
RPK_SASL_MECHANISM=$MECHANISM
RPK_BROKERS=${RPK_BROKERS:-kafka:9092}
RPK_ADMIN_HOSTS=${RPK_ADMIN_HOSTS:-kafka:9644}
export RPK_USER RPK_SASL_MECHANISM RPK_BROKERS RPK_ADMIN_HOSTS

# Check every password file before changing anything.
read_secret loader
for region in $REGIONS; do
    read_secret "edge-$region"
done
SECRET=

# --- wait for the broker ----------------------------------------------------------------------

# `rpk cluster health` is an open Admin API endpoint, asked without credentials (wrong ones would
# be refused once admin_api_require_auth is on); a broker that is not answering or not healthy yet
# is waited for (the compose dependency normally makes this immediate).
healthy() {
    (
        unset RPK_USER RPK_PASS RPK_SASL_MECHANISM
        rpk cluster health 2>/dev/null
    ) | grep -Eq '^Healthy:[[:space:]]+true'
}
attempt=0
until healthy; do
    attempt=$((attempt + 1))
    [ "$attempt" -lt 90 ] || die "the cluster did not report healthy at $RPK_ADMIN_HOSTS within 3 minutes"
    sleep 2
done
log "cluster healthy (admin API $RPK_ADMIN_HOSTS, Kafka API $RPK_BROKERS)"

# Runs "$@" up to 10 times, 3 s apart: for the Kafka calls right after users and cluster
# properties change (each change is applied asynchronously by the controller).
retry() {
    tries=0
    until "$@"; do
        tries=$((tries + 1))
        [ "$tries" -lt 10 ] || return 1
        log "retrying in 3 s: $1 ${2-} ${3-}"
        sleep 3
    done
}

# --- users ------------------------------------------------------------------------------------

USERS=$(rpk security user list) || die "cannot list users through the Admin API at $RPK_ADMIN_HOSTS
(if admin_api_require_auth is already true, $SECRETS_DIR/$ADMIN_USER must hold ta-admin's current
password: change ta-admin's password with 'rpk security user update' first, then the file)"

user_exists() {
    printf '%s\n' "$USERS" | awk 'NR > 1 { print $1 }' | grep -qxF -- "$1"
}

# Creates user $1 (SCRAM-SHA-512, password from its file), or sets the password and mechanism of
# an existing one to those (the Admin API treats an unchanged credential as a no-op).
ensure_user() {
    read_secret "$1"
    if user_exists "$1"; then
        rpk security user update "$1" --new-password="$SECRET" --mechanism="$MECHANISM" >/dev/null ||
            { SECRET=; die "cannot update user $1"; }
        log "user $1: exists; password and mechanism ($MECHANISM) set from $SECRETS_DIR/$1 (a no-op when unchanged)"
    else
        rpk security user create "$1" --new-password="$SECRET" --mechanism="$MECHANISM" >/dev/null ||
            { SECRET=; die "cannot create user $1"; }
        log "user $1: created ($MECHANISM)"
    fi
    SECRET=
}

ensure_user "$ADMIN_USER"

# --- cluster properties -----------------------------------------------------------------------

# Sets cluster property $1 to $2 unless `rpk cluster config get` already prints exactly $2.
ensure_property() {
    current=$(rpk cluster config get "$1") || die "cannot read cluster property $1"
    if [ "$current" = "$2" ]; then
        log "cluster property $1: $2"
    else
        rpk cluster config set "$1" "$2" >/dev/null || die "cannot set cluster property $1 to $2"
        log "cluster property $1: $current -> $2"
    fi
}

# superusers must contain ta-admin; other superusers an operator added are kept.
current=$(rpk cluster config get superusers) || die "cannot read cluster property superusers"
if printf '%s\n' "$current" | grep -qxF -- "- $ADMIN_USER"; then
    log "cluster property superusers: contains $ADMIN_USER"
else
    list=$(printf '%s\n' "$current" | sed -n 's/^- //p' |
        awk -v add="$ADMIN_USER" '{ printf "%s\"%s\"", (n++ ? "," : ""), $0 }
            END { printf "%s\"%s\"", (n ? "," : ""), add }')
    rpk cluster config set superusers "[$list]" >/dev/null || die "cannot add $ADMIN_USER to superusers"
    log "cluster property superusers: now [$list]"
fi
ensure_property kafka_enable_authorization true
ensure_property enable_sasl true
ensure_property auto_create_topics_enabled false

# --- the other users --------------------------------------------------------------------------

ensure_user loader
for region in $REGIONS; do
    ensure_user "edge-$region"
done
# Users of regions no longer listed are reported, not deleted (an edge may still be draining).
for user in $(printf '%s\n' "$USERS" | awk 'NR > 1 && $1 ~ /^edge-/ { print $1 }'); do
    listed=false
    for region in $REGIONS; do
        [ "$user" = "edge-$region" ] && listed=true
    done
    if [ "$listed" = false ]; then
        log "WARNING: user $user exists but its region is not in TA_EDGE_REGIONS; to remove it:"
        log "  rpk security acl delete --allow-principal User:$user --no-confirm"
        log "  rpk security user delete $user"
    fi
done

# --- topic ------------------------------------------------------------------------------------

create_topic() {
    if output=$(rpk topic create "$TOPIC" --partitions "$PARTITIONS" --replicas 1 2>&1); then
        log "topic $TOPIC: created ($PARTITIONS partitions, replication factor 1)"
        return 0
    fi
    case $output in
        *TOPIC_ALREADY_EXISTS*)
            count=$(rpk topic list 2>/dev/null | awk -v t="$TOPIC" '$1 == t { print $2 }')
            log "topic $TOPIC: exists (${count:-?} partitions; left as it is)"
            if [ -n "$count" ] && [ "$count" -lt "$PARTITIONS" ]; then
                log "  fewer than TA_KAFKA_TOPIC_PARTITIONS=$PARTITIONS: add some with"
                log "  rpk topic add-partitions $TOPIC --num $((PARTITIONS - count))  (see deploy/README.md)"
            fi
            return 0
            ;;
    esac
    printf '%s\n' "$output" >&2
    return 1
}
retry create_topic || die "cannot create topic $TOPIC"

# --- ACLs -------------------------------------------------------------------------------------

# Grants user $1 the operations $2 (comma separated) on the topic (literal name, any host).
# Granting an ACL that exists already is a no-op. rpk prints the created ACLs (no secrets).
grant() {
    retry rpk security acl create --allow-principal "User:$1" --operation "$2" \
        --topic "$TOPIC" --resource-pattern-type literal >&2 ||
        die "cannot create ACLs for User:$1"
}

# Fails unless the ALLOW ACLs of principal $1 are exactly operations $2 (space separated, upper
# case) on the topic: "RESOURCE-TYPE RESOURCE-NAME PATTERN OPERATION PERMISSION" per ACL.
check_acls() {
    got=$(rpk security acl list --allow-principal "$1" |
        awk -v p="$1" '$1 == p { print $3, $4, $5, $6, $7 }' | sort) ||
        die "cannot list the ACLs of $1"
    want=$(for operation in $2; do
        printf 'TOPIC %s LITERAL %s ALLOW\n' "$TOPIC" "$operation"
    done | sort)
    if [ "$got" != "$want" ]; then
        log "the ACLs of $1 are not exactly: ${2:-none}; found (type name pattern operation permission):"
        printf '%s\n' "${got:-  (none)}" >&2
        die "remove what is not expected (rpk security acl delete --allow-principal '$1' ...) and run again"
    fi
    log "ACLs of $1: ${2:-none}${2:+ on topic $TOPIC}"
}

grant loader read,describe
for region in $REGIONS; do
    grant "edge-$region" write,describe
done

check_acls User:loader "DESCRIBE READ"
for region in $REGIONS; do
    check_acls "User:edge-$region" "DESCRIBE WRITE"
done
# An ACL for every principal would give the edges and the loader more than the above.
check_acls 'User:*' ""

# --- lock the Admin API -----------------------------------------------------------------------

if [ "$REQUIRE_ADMIN_AUTH" = true ]; then
    # Accepted only from a superuser (ta-admin authenticates with its basic-auth credentials).
    ensure_property admin_api_require_auth true
else
    current=$(rpk cluster config get admin_api_require_auth 2>/dev/null) || current='?'
    log "admin_api_require_auth left as it is: $current (TA_REDPANDA_ADMIN_REQUIRE_AUTH=false)"
    if [ "$current" != true ]; then
        log "  WARNING: anything that reaches port 9644 can manage users, ACLs and the cluster configuration"
    fi
fi

log "done"

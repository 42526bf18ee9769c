#!/usr/bin/env bash
# What TLS costs the daemon alone. `deployd bench --compare-secure` runs the
# daemon and its clients in one process, so the clients' half of every TLS
# record is counted against the daemon. Here the daemon is its own process
# pinned to CPU 0 and the load generator is pinned to CPU 1: the daemon's
# core is the bottleneck, and deploys/s measure what the daemon can do with
# and without TLS (both with bearer tokens; auth cannot be turned off).
#
#   benches/tls_cost.sh [ROUNDS] [DEPLOYD]
#
# ROUNDS (default 3) pairs of runs, alternating which goes first; DEPLOYD
# defaults to target/release/deployd. Needs openssl and taskset (util-linux)
# and two CPUs. Prints one line per run and the medians.
set -euo pipefail

rounds=${1:-3}
deployd=$(realpath "${2:-target/release/deployd}")
work=$(mktemp -d)
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A CA and a certificate for localhost signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/ca.key" -out "$work/ca.pem" -days 1 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/server.key" -out "$work/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/san"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -out "$work/server.pem" -days 1 -extfile "$work/san" 2>/dev/null
"$deployd" token generate >"$work/admin.token"

# The load generator's own daemon settings: a copy of `zero_latency_config`
# (src/cli/bench.rs); change both together.
config() { # KIND PORT
    cat <<EOF
listen = "127.0.0.1:$2"
switch_listen = "127.0.0.1:$(($2 + 1))"
data_dir = "$work/data-$1"
standby_delay_ms = 3600000
readiness_poll_ms = 1
[auth]
bootstrap_token_file = "$work/admin.token"
[quotas]
max_projects_per_workspace = 100000
[edge]
enabled = false
[builder]
driver = "simulated"
slots = 64
duration_ms = 0
registry = "registry.bench"
EOF
    for region in us-east-1 eu-central-1 ap-southeast-1; do
        printf '[regions.%s]\ndriver = "simulated"\nready_after_ms = 0\npersist = false\nserve_http = false\n' "$region"
    done
    if [ "$1" = tls ]; then
        printf '[tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$work/server.pem" "$work/server.key"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

declare -a plain_rates tls_rates
one_run() { # KIND
    local kind=$1 port scheme host ca_flag=()
    port=$(free_port)
    rm -rf "$work/data-$kind"
    config "$kind" "$port" >"$work/$kind.toml"
    taskset -c 0 "$deployd" serve --config "$work/$kind.toml" >"$work/$kind.log" 2>&1 &
    daemon=$!
    scheme=http host=127.0.0.1
    if [ "$kind" = tls ]; then scheme=https host=localhost ca_flag=(--ca-file "$work/ca.pem"); fi
    for _ in $(seq 100); do
        grep -q "deployd listening" "$work/$kind.log" && break
        sleep 0.1
    done
    taskset -c 1 "$deployd" bench --json --target "$scheme://$host:$port" \
        --switch-target "$scheme://$host:$((port + 1))" --token "$(cat "$work/admin.token")" \
        "${ca_flag[@]}" --projects 1000 --clients 32 --seconds 10 --switches 300 >"$work/$kind.json"
    kill "$daemon"
    wait "$daemon" || true
    daemon=""
    local rate p99
    rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["loads"][-1]["deploys_per_second"]))' "$work/$kind.json")
    p99=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["rollback_alone"]["p99_ms"], 2))' "$work/$kind.json")
    echo "$kind: $rate deploys/s, rollback ack alone p99 $p99 ms"
    if [ "$kind" = tls ]; then tls_rates+=("$rate"); else plain_rates+=("$rate"); fi
}

for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then one_run plain; one_run tls; else one_run tls; one_run plain; fi
done

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
plain=$(median "${plain_rates[@]}")
tls=$(median "${tls_rates[@]}")
awk -v p="$plain" -v t="$tls" 'BEGIN {printf "median deploys/s: plain %.0f, TLS %.0f (%+.1f %%)\n", p, t, (t-p)/p*100}'

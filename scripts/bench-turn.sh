#!/usr/bin/env bash
# TURN relay benchmark: the same coturn `turnutils_uclient` load against coturn (`turnserver`)
# and against Mediaplane's TURN engine (calls/turn/src/bin/turn-bench-server.rs), one after the
# other on loopback, both with ephemeral REST-API credentials minted by uclient (-W secret).
# Prints throughput, loss and round trip for both and the Mediaplane/coturn throughput ratio.
#
# Usage: scripts/bench-turn.sh [--release] [-m clients] [-n messages] [-l bytes] [-z interval_ms] [-- extra uclient flags]
# Needs Debian `coturn` (turnserver, turnutils_uclient, turnutils_peer). Keep runs short: the
# machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=20 MESSAGES=2000 LENGTH=1000 INTERVAL=1 EXTRA=() PROFILE=debug
while [[ $# -gt 0 ]]; do
  case "$1" in
    --release) PROFILE=release; shift ;;
    -m) CLIENTS=$2; shift 2 ;;
    -n) MESSAGES=$2; shift 2 ;;
    -l) LENGTH=$2; shift 2 ;;
    -z) INTERVAL=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

for tool in turnserver turnutils_uclient turnutils_peer; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install coturn" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/mediaplane/target}
if [[ $PROFILE == release ]]; then
  cargo build -q --release -p calls-turn --bin turn-bench-server
else
  cargo build -q -p calls-turn --bin turn-bench-server
fi
SERVER_BIN="$CARGO_TARGET_DIR/$PROFILE/turn-bench-server"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PEER_PORT=$(free_port)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PIDS+=($!)

# run_load NAME PORT: runs uclient, prints one result line "name throughput_mbit loss_pct rtt_ms".
run_load() {
  local name=$1 port=$2 out="$WORK/$1.txt" start end
  start=$(date +%s.%N)
  timeout 300 turnutils_uclient -u bench -W "$SECRET" -e 127.0.0.1 -r "$PEER_PORT" \
    -m "$CLIENTS" -n "$MESSAGES" -l "$LENGTH" -z "$INTERVAL" "${EXTRA[@]}" -p "$port" 127.0.0.1 >"$out" 2>&1 || true
  end=$(date +%s.%N)
  python3 - "$name" "$out" "$start" "$end" <<'PY'
import re, sys
name, path, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
text = open(path, errors="replace").read()
def last(pattern, default="nan"):
    found = re.findall(pattern, text)
    return found[-1] if found else default
recv_bytes = float(last(r"tot_send_bytes ~ \d+, tot_recv_bytes ~ (\d+)", "0"))
lost_pct = last(r"Total lost packets \d+ \(([\d.]+)%\)")
rtt = last(r"Average round trip delay ([\d.]+) ms")
transmit = float(last(r"Total transmit time is (\d+)", "0"))
elapsed = transmit if transmit > 0 else end - start
mbit = recv_bytes * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
print(f"{name} {mbit:.2f} {lost_pct} {rtt} {recv_bytes:.0f} {elapsed:.1f}")
PY
}

RESULTS=()

COTURN_PORT=$(free_port)
turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$COTURN_PORT" \
  --min-port=42000 --max-port=44000 --use-auth-secret --static-auth-secret="$SECRET" --realm=mediaplane \
  --fingerprint --no-tls --no-dtls --no-cli --allow-loopback-peers --no-tcp-relay \
  --log-file="$WORK/coturn.log" --simple-log >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
RESULTS+=("$(run_load coturn "$COTURN_PORT")")
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

MP_PORT=$(free_port)
"$SERVER_BIN" --secret "$SECRET" --key-id bench --turn-udp-addr "127.0.0.1:$MP_PORT" --turn-tcp-addr "127.0.0.1:$MP_PORT" \
  --turn-tls-addr "" --turn-relay-ip 127.0.0.1 --turn-relay-port-min 44001 --turn-relay-port-max 46000 \
  --turn-allow-loopback-peers true --turn-user-quota 100000 >"$WORK/mediaplane.log" 2>&1 &
PIDS+=($!)
sleep 1
RESULTS+=("$(run_load mediaplane "$MP_PORT")")

echo "mediaplane build: $PROFILE profile"
echo "load: $CLIENTS clients x $MESSAGES messages x $LENGTH bytes every ${INTERVAL} ms ${EXTRA[*]:-}"
printf '%-11s %14s %10s %10s %14s %9s\n' server "throughput" "loss %" "rtt ms" "recv bytes" "seconds"
for line in "${RESULTS[@]}"; do
  read -r name mbit loss rtt bytes secs <<<"$line"
  printf '%-11s %9s Mbit/s %10s %10s %14s %9s\n' "$name" "$mbit" "$loss" "$rtt" "$bytes" "$secs"
done
read -r _ coturn_mbit coturn_loss coturn_rtt _ <<<"${RESULTS[0]}"
read -r _ mp_mbit mp_loss mp_rtt _ <<<"${RESULTS[1]}"
python3 - "$coturn_mbit" "$mp_mbit" "$coturn_loss" "$mp_loss" "$coturn_rtt" "$mp_rtt" <<'PY'
import sys
c_mbit, m_mbit, c_loss, m_loss, c_rtt, m_rtt = map(float, sys.argv[1:])
ratio = lambda a, b: f"{a / b:.2f}x" if b > 0 else "n/a"
# Throughput: higher is better; loss and round trip: lower is better, so those ratios are
# coturn/mediaplane and every ratio reads ">= 1.0 means Mediaplane is at least as good".
print(f"ratio mediaplane/coturn throughput: {ratio(m_mbit, c_mbit)}")
print(f"ratio coturn/mediaplane round trip: {ratio(c_rtt, m_rtt)}  (>= 1.0: Mediaplane's is as short or shorter)")
print(f"loss: coturn {c_loss:.2f} %, mediaplane {m_loss:.2f} %")
PY

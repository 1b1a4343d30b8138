#!/usr/bin/env bash
# compare_jetstream.sh - keten's broker and NATS JetStream, side by side, in
# one invocation on one machine (docs/performance.md).
#
#   tests/bench/compare_jetstream.sh [--build DIR] [--size BYTES] [--rate N|half]
#                                    [--duration S] [--runs K]
#
# keten: keten-bench (a real keten-broker over CurveZMQ, N senders and M
# receivers, prebuilt envelopes, one receipt batch per read burst): accepted
# signals/s, each acknowledged only after its audit record is durably
# committed, and counted only when the ack's inclusion proof verifies; and
# the latency submit -> proven ack.
# JetStream: Debian's nats-server with JetStream (file storage in a temporary
# directory, listening on 127.0.0.1 only) and a node.js publisher using the
# npm package "nats", which publishes messages as large as keten's envelopes
# and waits for each PubAck (js.publish): acked publishes/s, and the latency
# publish -> PubAck.
# Both sides run twice per repetition: as fast as they go (a window of
# messages in flight), then open loop at one rate (--rate N, or half of
# keten's maximum). Medians with min-max over --runs repetitions, and the
# ratio keten / JetStream. Whether each side calls fsync/fdatasync before it
# acknowledges is checked with strace during load and printed next to the
# figures.
#
# It installs what it needs (nats-server, strace, node/npm from Debian; the
# npm package into a temporary directory) and stops every process it started.
set -u

BUILD=""
SIZE=1000
RATE=half
DURATION=10
RUNS=5
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare_jetstream.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ -z "$BUILD" ]; then
    for d in "$ROOT/build" "$ROOT"/build-*; do
        [ -x "$d/tests/bench/keten-bench" ] && [ -x "$d/broker/keten-broker" ] && { BUILD=$d; break; }
    done
fi
BENCH="$BUILD/tests/bench/keten-bench"
BROKER="$BUILD/broker/keten-broker"
if [ ! -x "$BENCH" ] || [ ! -x "$BROKER" ]; then
    echo "compare_jetstream.sh: no built keten-bench and keten-broker; build first (meson setup build -Dtest_hooks=true && ninja -C build) or give --build DIR" >&2
    exit 1
fi

# ---- what it needs ----------------------------------------------------------------------

need_apt=()
command -v nats-server >/dev/null || need_apt+=(nats-server)
command -v strace >/dev/null || need_apt+=(strace)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null \
        || { echo "compare_jetstream.sh: apt-get install ${need_apt[*]} failed" >&2; exit 1; }
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-vs-js.XXXXXX") || exit 1
NATS_PID=""
PUB_PID=""
cleanup() {
    for p in $PUB_PID $NATS_PID; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "installing the npm package nats into $T/npm"
(cd "$T" && mkdir -p npm && npm install --prefix npm --no-audit --no-fund --silent nats@2 >npm.log 2>&1) \
    || { echo "compare_jetstream.sh: npm install nats failed:" >&2; cat "$T/npm.log" >&2; exit 1; }

# ---- the JetStream publisher --------------------------------------------------------------

cat >"$T/pub.js" <<'JS'
// Publish SIZE-byte messages to a JetStream file stream, waiting for every
// PubAck; rate 0 = as fast as possible with WINDOW in flight, else open loop
// (latency from the scheduled time). Prints one JSON object.
const { connect, StorageType } = require(process.argv[2] + '/node_modules/nats');
const [server, size, rate, duration, windowSize] = [process.argv[3], +process.argv[4],
    +process.argv[5], +process.argv[6], +process.argv[7]];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
    const nc = await connect({ servers: server });
    const jsm = await nc.jetstreamManager();
    try { await jsm.streams.delete('BENCH'); } catch (e) { /* first run */ }
    await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'], storage: StorageType.File });
    const js = nc.jetstream();
    const payload = new Uint8Array(size);
    for (let i = 0; i < size; i++) payload[i] = (i * 131) & 0xff;
    const lat = [];
    let sent = 0, acked = 0, ackedInWindow = 0, errors = 0, inflight = 0;
    const t0 = performance.now() + 20, end = t0 + duration * 1000;
    const pub = (sched) => {
        inflight++; sent++;
        js.publish('bench.' + (sent % 16), payload).then(() => {
            const now = performance.now();
            acked++; if (now <= end) ackedInWindow++;
            lat.push(now - sched); inflight--;
        }, () => { errors++; inflight--; });
    };
    while (performance.now() < t0) await sleep(1);
    if (rate > 0) {
        const gap = 1000 / rate;
        let k = 0;
        for (;;) {
            const now = performance.now();
            if (now >= end) break;
            while (t0 + k * gap <= now) { pub(t0 + k * gap); k++; }
            const next = t0 + k * gap - performance.now();
            await (next > 1.5 ? sleep(Math.min(next - 0.5, 20)) : new Promise((r) => setImmediate(r)));
        }
    } else {
        while (performance.now() < end) {
            while (inflight < windowSize) pub(performance.now());
            await new Promise((r) => setImmediate(r));
        }
    }
    const drainEnd = performance.now() + 60000;
    while (inflight > 0 && performance.now() < drainEnd) await sleep(5);
    lat.sort((a, b) => a - b);
    const pct = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.max(0, Math.ceil(p * lat.length) - 1))] : -1;
    console.log(JSON.stringify({ sent, acked, errors, acked_per_s: ackedInWindow / duration,
        p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), p999: pct(0.999) }));
    await nc.close();
})().catch((e) => { console.error('pub.js: ' + e.message); process.exit(1); });
JS

# ---- nats-server with JetStream -----------------------------------------------------------

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$T/js"
cat >"$T/nats.conf" <<EOF
listen: 127.0.0.1:$PORT
jetstream {
    store_dir: "$T/js"
    max_file_store: 8G
}
EOF
nats-server -c "$T/nats.conf" >"$T/nats.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 100); do
    grep -q "Server is ready" "$T/nats.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "Server is ready" "$T/nats.log" || { echo "nats-server did not start:" >&2; cat "$T/nats.log" >&2; exit 1; }
NATS_VERSION=$(nats-server --version 2>&1)

# ---- helpers --------------------------------------------------------------------------------

# keten RATE OUT [ATTACH]: one keten-bench run (rate: max or a number).
keten() {
    local rate=$1 out=$2
    shift 2
    "$BENCH" --broker "$BROKER" --size "$SIZE" --rate "$rate" --duration "$DURATION" \
        --store-dir "$T" --json "$out" "$@" >"$out.log" 2>&1
}
# js RATE OUT: one JetStream publisher run (rate 0: max).
js() {
    node "$T/pub.js" "$T/npm" "nats://127.0.0.1:$PORT" "$ENV_BYTES" "$1" "$DURATION" 256 >"$2" 2>"$2.err" &
    PUB_PID=$!
    wait "$PUB_PID"
    local rc=$?
    PUB_PID=""
    return $rc
}
jget() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
SYSCALLS=fsync,fdatasync,msync,sync_file_range

# ---- what each side does before it acknowledges (strace during load) ------------------------

echo "checking fsync before acknowledgement with strace ..."
keten 2000 "$T/k-strace.json" --runs 1 --prebuild-rate 2000 \
    --attach "timeout -s INT 3 strace -f -qq -e trace=$SYSCALLS -p \$KETEN_BROKER_PID -o $T/k.strace"
ENV_BYTES=$(jget "$T/k-strace.json" 'd["config"]["envelope_bytes"]')
K_SYNCS=$(cat "$T/k.strace" 2>/dev/null | grep -cE "fsync|fdatasync|msync|sync_file_range" || true)
K_ACKED=$(jget "$T/k-strace.json" 'd["runs"][0]["acked"]')
node "$T/pub.js" "$T/npm" "nats://127.0.0.1:$PORT" "$ENV_BYTES" 2000 6 256 >"$T/j-strace.json" 2>&1 &
PUB_PID=$!
sleep 1.5
timeout -s INT 3 strace -f -qq -e trace=$SYSCALLS -p "$NATS_PID" -o "$T/j.strace" 2>/dev/null
wait "$PUB_PID"
PUB_PID=""
J_SYNCS=$(cat "$T/j.strace" 2>/dev/null | grep -cE "fsync|fdatasync|msync|sync_file_range" || true)

# ---- the runs -------------------------------------------------------------------------------

echo "envelope: $ENV_BYTES bytes (signal $SIZE bytes); $RUNS repetitions of $DURATION s"
for r in $(seq "$RUNS"); do
    keten max "$T/k-max-$r.json" --prebuild-rate 12000 || { echo "keten-bench failed:"; cat "$T/k-max-$r.json.log"; exit 1; }
    js 0 "$T/j-max-$r.json" || { echo "publisher failed:"; cat "$T/j-max-$r.json.err"; exit 1; }
    echo "  run $r max: keten $(jget "$T/k-max-$r.json" 'round(d["runs"][0]["accepted_per_s"])')/s, JetStream $(jget "$T/j-max-$r.json" 'round(d["acked_per_s"])')/s"
done
if [ "$RATE" = half ]; then
    RATE=$(python3 -c 'import json,sys,statistics as s; print(int(s.median(json.load(open(f))["runs"][0]["accepted_per_s"] for f in sys.argv[1:]) / 2))' "$T"/k-max-*.json)
fi
for r in $(seq "$RUNS"); do
    keten "$RATE" "$T/k-rate-$r.json" || { echo "keten-bench failed:"; cat "$T/k-rate-$r.json.log"; exit 1; }
    js "$RATE" "$T/j-rate-$r.json" || { echo "publisher failed:"; cat "$T/j-rate-$r.json.err"; exit 1; }
    echo "  run $r at $RATE/s: keten ack p99 $(jget "$T/k-rate-$r.json" 'd["runs"][0]["submit_to_ack_ms"]["p99"]') ms, JetStream $(jget "$T/j-rate-$r.json" 'd["p99"]') ms"
done

# ---- the table ----------------------------------------------------------------------------

python3 - "$T" "$RUNS" "$RATE" "$K_SYNCS" "$K_ACKED" "$J_SYNCS" "$ENV_BYTES" "$SIZE" "$NATS_VERSION" <<'PY'
import json, statistics, sys
T, runs, rate, k_syncs, k_acked, j_syncs, env, size, natsv = sys.argv[1:10]
runs = int(runs)
def load(p):
    return json.load(open(p))
K = {m: [load(f"{T}/k-{m}-{r}.json")["runs"][0] for r in range(1, runs + 1)] for m in ("max", "rate")}
J = {m: [load(f"{T}/j-{m}-{r}.json") for r in range(1, runs + 1)] for m in ("max", "rate")}
def st(v):
    v = sorted(v)
    return statistics.median(v), v[0], v[-1]
def fmt(s, d):
    return f"{s[0]:.{d}f} [{s[1]:.{d}f}-{s[2]:.{d}f}]"
rows = [
    ("throughput, max (acks/s)", st([k["accepted_per_s"] for k in K["max"]]),
     st([j["acked_per_s"] for j in J["max"]]), 0),
    ("ack latency p50 at max (ms)", st([k["submit_to_ack_ms"]["p50"] for k in K["max"]]),
     st([j["p50"] for j in J["max"]]), 2),
    (f"ack latency p50 at {rate}/s (ms)", st([k["submit_to_ack_ms"]["p50"] for k in K["rate"]]),
     st([j["p50"] for j in J["rate"]]), 2),
    (f"ack latency p99 at {rate}/s (ms)", st([k["submit_to_ack_ms"]["p99"] for k in K["rate"]]),
     st([j["p99"] for j in J["rate"]]), 2),
    (f"ack latency p99.9 at {rate}/s (ms)", st([k["submit_to_ack_ms"]["p99.9"] for k in K["rate"]]),
     st([j["p999"] for j in J["rate"]]), 2),
    (f"acked/s at {rate}/s", st([k["accepted_per_s"] for k in K["rate"]]),
     st([j["acked_per_s"] for j in J["rate"]]), 0),
]
print()
print(f"keten vs NATS JetStream: {env}-byte messages (a {size}-byte keten signal's envelope), "
      f"medians [min-max] of {runs} runs each, side by side")
print(f"{'':36} {'keten':>26} {'JetStream':>26} {'keten/JS':>9}")
for name, k, j, d in rows:
    ratio = k[0] / j[0] if j[0] else float("nan")
    print(f"{name:36} {fmt(k, d):>26} {fmt(j, d):>26} {ratio:9.2f}")
kcpu = st([k["broker"]["cpu_per_msg_us"] for k in K["max"]])
print(f"{'keten broker CPU per message (us)':36} {fmt(kcpu, 1):>26}")
print(f"{'keten broker CPU / crypto floor':36} {fmt(st([k['cpu_over_floor'] for k in K['max']]), 2):>26}")
print()
print("What each side did per message:")
print(f"  keten:     signed, end-to-end encrypted envelope verified (Ed25519) against the sender's")
print(f"             certificate and the sharing policy; a 'submitted' record appended to the Merkle")
print(f"             audit log, the envelope stored and queued, all in one LMDB transaction; the commit")
print(f"             ends with a checkpoint signed (Ed25519) once, and the ack is the message's")
print(f"             inclusion proof against it; then delivered to its recipient (with its proof), whose")
print(f"             signed receipt batch was verified, audited ('delivered' and 'receipted' records)")
print(f"             and forwarded to the sender, all on the same 2 cores as the load generator.")
print(f"             fsync before ack: {k_syncs} fsync/fdatasync calls by the broker in a 3 s strace window")
print(f"             during load ({k_acked} acks in that run): "
      + ("YES: every commit is fdatasync'ed (and its meta page written through an O_DSYNC\n"
         "             descriptor) before that batch's acks are sent (group commit)" if int(k_syncs) > 0
         else "NONE SEEN"))
print(f"  JetStream: {natsv}, file storage; the publisher awaited each PubAck; no signatures, no")
print(f"             end-to-end encryption, no Merkle log, no policy check, no consumer (publish only).")
print(f"             fsync before ack: {j_syncs} fsync/fdatasync/msync calls by nats-server in a 3 s")
print(f"             strace window during load: "
      + ("it syncs" if int(j_syncs) > 0 else
         "NONE: a PubAck means the message is in the server's file (page cache), not on disk; "
         "this version flushes on its own schedule (no sync_interval option in 2.9)"))
PY

#!/usr/bin/env bash
# Peers that flood the broker without reading (keten-hostile flood, with a
# receive high-water mark of 1, so that it never takes what the broker sends):
#   A. 5,000 valid submits from an authenticated partner (five times the
#      broker's per-peer send queue);
#   B. 5,000 submits of random bytes;
#   C. 12 messages just under KETEN_FRAME_MAX (16 MiB each);
#   D. a partner that grants 4,096 deliveries of credit and never reads them,
#      while 160 large (512 KiB) messages, 80 MiB, wait for it: the broker
#      hands it no more than its per-connection budget of deliveries in
#      flight, 16 MiB (BROKER_INFLIGHT_BYTES_MAX), whatever the credit.
# (Under AddressSanitizer the counts are smaller and memory is not measured.)
# Meanwhile another partner submits again and again and must get each ack
# (liveness, with a generous 60 s timeout: no speed is asserted); the broker
# must not crash, must audit and process every flooded submit (it drops the
# acks the flooder does not read, not the messages), and its memory must stay
# bounded: anonymous memory (RssAnon: heap and ZeroMQ queues) and peak VmRSS
# (VmHWM, which also counts the LMDB map's file pages) are read from /proc.
. "$(dirname "$0")/hostile_lib.sh"

setup_broker_network || done_testing
make_probe_signal
start_broker || done_testing

N_VALID=5000
N_JUNK=5000
N_BIG=12
N_QUEUED=160
if [ -n "$SANITIZED" ]; then
    N_JUNK=2000
    N_BIG=6
    N_QUEUED=40
fi
MiB=1024 # /proc/PID/status counts KiB

probe_ack
check "before any flood, a partner's submit is acknowledged" test $? -eq 0
BASE_ANON=$(mem RssAnon)
BASE_RSS=$(mem VmRSS)
echo "# broker before the floods: VmRSS ${BASE_RSS} KiB, RssAnon ${BASE_ANON} KiB"

# sampler PID FILE: every 0.2 s while PID lives, the highest RssAnon so far.
sampler() {
    local max=0 v
    while kill -0 "$1" 2>/dev/null; do
        v=$(mem RssAnon)
        if [ -n "$v" ] && [ "$v" -gt "$max" ]; then
            max=$v
            echo "$max" >"$2"
        fi
        sleep 0.2
    done
}

# probe_tax: probe_ack (hostile_lib.sh) from belastingdienst, for when the
# flooder is politie-mn (a connection of the same node would replace the
# flooder's).
probe_tax() {
    peer belastingdienst --timeout-ms 60000 submit --to gemeente-diemen --kind reply \
        --json probe.json
    jget 'len([e for e in E("ack") if e.get("valid")])' | grep -qx 1
}

# flood NAME OPTIONS...: run keten-hostile flood in the background as
# gemeente-diemen (or FLOODER); while it runs, probe the broker with a
# well-behaved partner (probe_ack, or the function PROBE names). Sets
# PROBES, PROBES_OK, PEAK_ANON (KiB); the flooder's output is in
# flood-NAME.out.
flood() {
    local name=$1
    shift
    : >"flood-$name.out"
    timeout 600 "$HOSTILE" flood --home "n-${FLOODER:-gemeente-diemen}" \
        --anchor admin/network.pub --directory dir.v1 --broker "$ENDPOINT" \
        --timeout-ms 60000 "$@" >"flood-$name.out" 2>&1 &
    local fpid=$!
    echo 0 >"peak-$name"
    sampler "$fpid" "peak-$name" &
    local spid=$!
    wait_for 120 grep -q '"event":"sealed"' "flood-$name.out"
    PROBES=0
    PROBES_OK=0
    while kill -0 "$fpid" 2>/dev/null; do
        PROBES=$((PROBES + 1))
        if "${PROBE:-probe_ack}"; then
            PROBES_OK=$((PROBES_OK + 1))
        fi
        sleep 0.2
    done
    wait "$fpid"
    FLOOD_RC=$?
    wait "$spid"
    PEAK_ANON=$(cat "peak-$name")
    cp "flood-$name.out" "$T/.out"
    echo "# flood $name: $(tr '\n' ' ' <"flood-$name.out")"
    echo "# flood $name: $PROBES_OK of $PROBES probes acknowledged; peak RssAnon $PEAK_ANON KiB; VmHWM $(mem VmHWM) KiB"
}

# bounded WHAT VALUE LIMIT: VALUE <= LIMIT (KiB), or a SKIP when sanitized.
bounded() {
    if [ -n "$SANITIZED" ]; then
        skip "$1" "memory is not measured under AddressSanitizer"
    else
        check "$1 (${2:-?} KiB, at most $3 KiB)" at_most "$2" "$3"
    fi
}

# at_most VALUE LIMIT: VALUE is a number no greater than LIMIT.
at_most() {
    [ -n "$1" ] && [ "$1" -le "$2" ]
}

# audited REGEX N: wait (90 s at most) until N audit records (JSON lines of
# keten-testpeer audit) match the extended regular expression REGEX.
audited() {
    local i
    for i in $(seq 1 90); do
        audit
        [ "$(grep -cE "$1" "$T/.out")" -ge "$2" ] && return 0
        sleep 1
    done
    echo "# $(grep -cE "$1" "$T/.out") audit records match $1"
    return 1
}
MSGID='("msg_id":"[0-9a-f]*",)?'

# ---- A: valid submits, never reading ------------------------------------------

flood valid --to belastingdienst --json signal.json --count "$N_VALID" --hold-ms 1000 \
    --drain-ms 1500
check "A: the flooder ran" test "$FLOOD_RC" -eq 0
jl "E('flooded')[0]['sent'] == $N_VALID" "A: $N_VALID valid submits were sent without reading"
check "A: a partner probed the broker during the flood ($PROBES times)" test "$PROBES" -ge 1
check "A: every probe was acknowledged ($PROBES_OK of $PROBES)" test "$PROBES_OK" -eq "$PROBES"
jl "E('drained')[0]['frames'] < $N_VALID * 4 // 5" \
    "A: the acks the flooder did not read were dropped at the broker's send queue, not kept"
bounded "A: the broker's anonymous memory grew by less than 64 MiB" \
    "$((PEAK_ANON - BASE_ANON))" $((64 * MiB))
bounded "A: the broker's peak VmRSS stayed below its start + 256 MiB" \
    "$(mem VmHWM)" $((BASE_RSS + 256 * MiB))
check "A: the broker is still running" broker_alive
audited "\"event\":\"SUBMITTED\",$MSGID\"sender\":\"gemeente-diemen\"" "$N_VALID"
check "A: every flooded submit was processed and audited (submitted)" test $? -eq 0
peer belastingdienst recv --count 3 --no-receipt
jl 'len(E("deliver")) == 3 and all(d["opened"] for d in E("deliver"))' \
    "A: the flooded messages are delivered to their recipient and open"

# ---- B: random bytes ------------------------------------------------------------

flood junk --junk-bytes 300 --count "$N_JUNK" --hold-ms 1000
check "B: the flooder ran" test "$FLOOD_RC" -eq 0
jl "E('flooded')[0]['sent'] == $N_JUNK" "B: $N_JUNK submits of random bytes were sent"
check "B: every probe was acknowledged ($PROBES_OK of $PROBES)" \
    test "$PROBES_OK" -eq "$PROBES" -a "$PROBES" -ge 1
bounded "B: the broker's anonymous memory grew by less than 64 MiB" \
    "$((PEAK_ANON - BASE_ANON))" $((64 * MiB))
audited "\"event\":\"REJECTED\",$MSGID\"sender\":\"gemeente-diemen\".*\"reason\":\"MALFORMED\"" \
    "$N_JUNK"
check "B: each one was refused and audited (MALFORMED)" test $? -eq 0

# ---- C: 16 MiB messages -----------------------------------------------------------

flood big --junk-bytes $((16 * 1024 * 1024)) --count "$N_BIG" --hold-ms 1000
check "C: the flooder ran" test "$FLOOD_RC" -eq 0
jl "E('flooded')[0]['sent'] == $N_BIG" "C: $N_BIG messages of 16 MiB were sent"
check "C: every probe was acknowledged ($PROBES_OK of $PROBES)" \
    test "$PROBES_OK" -eq "$PROBES" -a "$PROBES" -ge 1
bounded "C: the broker's peak VmRSS stayed below its start + 512 MiB" \
    "$(mem VmHWM)" $((BASE_RSS + 512 * MiB))
audited "\"event\":\"REJECTED\",$MSGID\"sender\":\"gemeente-diemen\".*\"reason\":\"TOO_LARGE\"" "$N_BIG"
check "C: each one was refused and audited (TOO_LARGE)" test $? -eq 0

# ---- D: credit granted, deliveries never read ---------------------------------------

"$PY" - <<'PY'
import base64, json, os
sig = {"type": "woonfraude", "purpose": "handhaving", "summary": "foto's van de gevel",
       "nature": "hard",
       "attachments": [{"name": "gevel.jpg", "media_type": "image/jpeg",
                        "data_base64": base64.b64encode(os.urandom(300000)).decode()}]}
open("big.json", "w").write(json.dumps(sig))
PY
# (keten-testpeer directly: `peer` stops it after 60 s.)
run timeout 300 "$PEER" --home n-gemeente-diemen --anchor admin/network.pub --directory dir.v1 \
    --broker "$ENDPOINT" --timeout-ms 240000 submit --to politie-mn --json big.json \
    --count "$N_QUEUED"
jl "len(E('ack')) == $N_QUEUED" "D: $N_QUEUED signals of 512 KiB are queued for politie-mn"
D_BASE=$(mem RssAnon)
PROBE=probe_tax FLOODER=politie-mn flood reader --junk-bytes 10 --count 1 --credit 4096 \
    --hold-ms 4000
check "D: politie-mn connected, granted 4096 deliveries and read nothing for 4 s" \
    test "$FLOOD_RC" -eq 0
check "D: every probe was acknowledged meanwhile ($PROBES_OK of $PROBES)" \
    test "$PROBES_OK" -eq "$PROBES" -a "$PROBES" -ge 1
audit
D_OUT=$(grep -cE "\"event\":\"DELIVERED\",$MSGID\"sender\":\"[^\"]*\",\"node\":\"politie-mn\"" "$T/.out")
echo "# D: $D_OUT deliveries of 512 KiB handed to the non-reading node; broker RssAnon grew by $((PEAK_ANON - D_BASE)) KiB while it held them"
check "D: the non-reading node was handed deliveries ($D_OUT)" test "$D_OUT" -ge 1
check "D: at most 16 MiB of them, its budget in flight ($D_OUT x 512 KiB; $N_QUEUED wait)" \
    test "$((D_OUT * 512))" -le $((16 * MiB))
bounded "D: the broker's anonymous memory grew by less than 64 MiB meanwhile" \
    "$((PEAK_ANON - D_BASE))" $((64 * MiB))
run timeout 300 "$PEER" --home n-politie-mn --anchor admin/network.pub --directory dir.v1 \
    --broker "$ENDPOINT" --timeout-ms 240000 recv --count "$N_QUEUED"
jl "len(E('deliver')) == $N_QUEUED and all(d['opened'] for d in E('deliver'))" \
    "D: politie-mn reconnects as a reader and gets all $N_QUEUED"

check "the broker is still running" broker_alive
no_sanitizer_report
stop_broker
check "the broker stops with exit 0" test "$BRC" -eq 0
done_testing

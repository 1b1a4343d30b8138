#!/usr/bin/env bash
# A full store: with a small LMDB map (--map-size 16 MiB, of which 8 MiB are
# kept in reserve) the broker refuses new submits with STORE_FULL and says
# to enlarge --map-size, shows keten_store_full 1, and still delivers and
# accepts the receipts of what it had queued; once they free the space, new
# submits are accepted again. Restarting with a larger map keeps everything.
. "$(dirname "$0")/broker_lib.sh"
need_tool curl # the metrics endpoint

setup_broker_network || done_testing
# A signal with a 300 KB attachment: its envelope takes the 512 KiB bucket.
"$PY" - <<'PY'
import base64, json, os
sig = {"type": "woonfraude", "purpose": "handhaving", "summary": "foto's van de gevel",
       "nature": "hard",
       "attachments": [{"name": "gevel.jpg", "media_type": "image/jpeg",
                        "data_base64": base64.b64encode(os.urandom(300000)).decode()}]}
open("big.json", "w").write(json.dumps(sig))
PY
start_broker --map-size $((16 * 1024 * 1024)) --metrics 127.0.0.1:0 || done_testing
METRICS_PORT=$(metrics_port)

peer gemeente-diemen --timeout-ms 30000 submit --to politie-mn --json big.json --count 24
expect 0 "24 large signals (512 KiB each) to an offline recipient"
accepted=$(jget 'len(E("ack"))')
jl 'len(E("ack")) >= 4 and all(a["valid"] for a in E("ack"))' "the first ones are accepted"
jl 'len(E("error")) >= 1 and all(e["reason"] == "STORE_FULL" for e in E("error"))' \
    "the rest are refused with STORE_FULL"
jl 'len(E("ack")) + len(E("error")) == 24' "every submit is answered"
jl 'E("error")[0]["detail"] == "store full: enlarge --map-size"' \
    "the refusal says what to do"
jl 'max(a["request_id"] for a in E("ack")) < min(e["request_id"] for e in E("error"))' \
    "it refuses only once it is full"

run curl -sf "http://127.0.0.1:$METRICS_PORT/metrics"
stdout_says "keten_store_full 1" "the metric keten_store_full is 1"
stdout_says 'keten_rejects_total{reason="store_full"}' "refusals are counted by reason"

peer politie-mn --timeout-ms 30000 recv --count "$accepted"
jl "len(E('deliver')) == $accepted and all(d['opened'] and d['receipted'] for d in E('deliver'))" \
    "the full broker still delivers every queued message, and they are receipted"
jl 'not E("error")' "no receipt is refused"
audit
jl "len([r for r in L if r['event'] == 'RECEIPTED']) == $accepted" "every receipt is audited"
jl "len([r for r in L if r['event'] == 'REJECTED' and r['reason'] == 'STORE_FULL']) == 24 - $accepted" \
    "every STORE_FULL refusal is audited"

# The receipts deleted the payloads; the space is reused.
store_free() {
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | grep -q '^keten_store_full 0'
}
wait_for 10 store_free
check "once the receipts freed the space, keten_store_full goes back to 0" test $? -eq 0
peer gemeente-diemen submit --to politie-mn --json signal.json
jl 'len(E("ack")) == 1' "and a new submit is accepted"
stop_broker
check "the broker stops (exit 0)" test "$BRC" -eq 0

start_broker --map-size $((64 * 1024 * 1024)) || done_testing
peer politie-mn recv --count 1
jl 'len(E("deliver")) == 1' "restarted with a larger map, the queued message is still there"
stop_broker
done_testing

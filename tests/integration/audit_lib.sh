# shellcheck shell=bash
#
# audit_lib.sh - helpers for keten-audit's integration tests, on top of
# broker_lib.sh (and lib.sh). Source it with the programs as arguments:
#   keten-keys keten-node keten-broker keten-test-tool keten-testpeer
#   keten-audit keten-auditedit
#
# make_log runs the real keten-broker on ipc:// with keten-testpeer nodes and
# leaves an audit log with every kind of record and these known exchanges
# (M = gemeente-diemen, P = politie-mn, T = belastingdienst, W = woonstad;
# purposes h = handhaving, r = riec-convenant-2024/art-5):
#   1. M -> P   woonfraude/h  signal  x2   delivered, receipted      (MSG_P1, MSG_P2)
#   2. M -> T   woonfraude/h  signal  x3   delivered later, receipted
#   3. M -> P,T adrescheck/r  query   x1   both receipt              (MSG_Q)
#   4. P -> M   adrescheck/r  reply   x1   receipted                 (MSG_R)
#   5. M -> W   adrescheck/r  signal  x1   expired, never delivered  (MSG_X)
#   6. M -> T   woonfraude/h  signal  x1   under directory v2, pending (MSG_V2)
# = 9 messages, 10 exchanges, 8 receipted, 1 expired; rejected: M -> W
# woonfraude (policy rule 3) and a spoofed sender; an auth failure (unknown
# transport key); directory v2 (W revoked) installed by SIGHUP; checkpoints
# cosigned by three partners (witnessed). The broker keeps running.

AUDIT=$(realpath "${6:?keten-audit path}")
EDIT=$(realpath "${7:?keten-auditedit path}")
. "$(dirname "$0")/broker_lib.sh"

# sent_ids FILE: the msg_ids a peer printed as "sent", comma-separated.
sent_ids() {
    cp "$1" "$T/.out"
    jget '",".join(e["msg_id"] for e in E("sent"))'
}

# jo PYTHON_EXPR DESCRIPTION: ok when the expression is true; D is the one
# (indented) JSON document the last command printed.
jo() {
    check "$2" "$PY" - "$T/.out" "$1" 2>/dev/null <<'PY'
import json, sys
D = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}

# jv PYTHON_EXPR: print the value of the expression over D.
jv() {
    "$PY" - "$T/.out" "$1" 2>/dev/null <<'PY'
import json, sys
D = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))
PY
}

# logged EVENT: the broker store holds a record of that event (testpeer names).
logged() {
    "$PEER" audit --db broker/store 2>/dev/null | grep -q "\"event\":\"$1\""
}

make_log() {
    setup_broker_network || return 1
    cat >check.json <<'EOF'
{"type":"adrescheck","purpose":"riec-convenant-2024/art-5","summary":"Staat dit adres bij u bekend?",
 "nature":"hard","handling":"TLP:AMBER",
 "subjects":[{"kind":"address","value":"Dorpsstraat 7, 1111 AB Diemen"}]}
EOF
    cp dir.v1 current.dir
    BROKER_DIR=current.dir
    start_broker --checkpoint-ms 200 || return 1

    # 1. to an online recipient
    timeout 30 "$PEER" --home n-politie-mn --anchor admin/network.pub --directory dir.v1 \
        --broker "$ENDPOINT" --timeout-ms 15000 recv --count 2 >recv-p.json 2>&1 &
    local rpid=$!
    wait_for 10 grep -q 'msg="node connected" node=politie-mn' "$BLOG" || return 1
    peer gemeente-diemen --timeout-ms 15000 submit --to politie-mn --json signal.json --count 2 \
        --wait-receipts 2
    [ "$(jget 'len(E("ack"))')" = 2 ] || { not_ok "make_log: two signals to politie-mn"; return 1; }
    MSG_P1=$(jget 'E("sent")[0]["msg_id"]')
    MSG_P2=$(jget 'E("sent")[1]["msg_id"]')
    wait "$rpid"

    # 2. to an offline recipient, delivered later
    peer gemeente-diemen submit --to belastingdienst --json signal.json --count 3
    [ "$(jget 'len(E("ack"))')" = 3 ] || { not_ok "make_log: three signals to tax"; return 1; }
    peer belastingdienst recv --count 3
    [ "$(jget 'len(E("deliver"))')" = 3 ] || { not_ok "make_log: tax receives"; return 1; }

    # 3. a query to two recipients, 4. a reply
    peer gemeente-diemen submit --to politie-mn,belastingdienst --json check.json --kind query
    [ "$(jget 'len(E("ack"))')" = 1 ] || { not_ok "make_log: the query"; return 1; }
    MSG_Q=$(jget 'E("sent")[0]["msg_id"]')
    peer politie-mn recv --count 1
    peer belastingdienst recv --count 1
    peer politie-mn submit --to gemeente-diemen --json check.json --kind reply
    [ "$(jget 'len(E("ack"))')" = 1 ] || { not_ok "make_log: the reply"; return 1; }
    MSG_R=$(jget 'E("sent")[0]["msg_id"]')
    peer gemeente-diemen recv --count 1

    # 5. expiry
    peer gemeente-diemen submit --to woonstad --json check.json --expires-in-ms 1000
    [ "$(jget 'len(E("ack"))')" = 1 ] || { not_ok "make_log: the short-lived signal"; return 1; }
    MSG_X=$(jget 'E("sent")[0]["msg_id"]')

    # rejections and an authentication failure
    peer gemeente-diemen submit --to woonstad --json signal.json
    [ "$(jget 'E("error")[0]["reason"]')" = POLICY ] || { not_ok "make_log: policy"; return 1; }
    MSG_POLICY=$(jget 'E("sent")[0]["msg_id"]')
    peer politie-mn --sign-home n-gemeente-diemen submit --to belastingdienst --json signal.json
    peer woonstad --transport-key-only --timeout-ms 1000 connect-only --listen-ms 300

    # witnesses: three partners cosign the checkpoints
    local pids=() n
    for n in politie-mn belastingdienst gemeente-diemen; do
        timeout 30 "$PEER" --home "n-$n" --anchor admin/network.pub --directory dir.v1 \
            --broker "$ENDPOINT" --cosign connect-only --listen-ms 2500 >"cosign-$n.json" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    wait_for 10 grep -q 'msg="checkpoint witnessed"' "$BLOG" \
        || { not_ok "make_log: a checkpoint is witnessed"; return 1; }

    # directory v2: woonstad revoked (after its message expired)
    wait_for 10 logged EXPIRED || { not_ok "make_log: the expiry is logged"; return 1; }
    run "$KEYS" revoke --dir admin woonstad --reason "left the covenant"
    [ "$RC" -eq 0 ] || { not_ok "make_log: revoke"; return 1; }
    publish dir.v2 || return 1
    cp dir.v2 current.dir
    kill -HUP "$BPID"
    wait_for 10 grep -q 'msg="directory installed" version=2' "$BLOG" \
        || { not_ok "make_log: version 2 installed"; return 1; }

    # 6. one more under version 2, never picked up
    PEER_DIR=dir.v2 peer gemeente-diemen submit --to belastingdienst --json signal.json \
        --save-envelope v2.env
    [ "$(jget 'len(E("ack"))')" = 1 ] || { not_ok "make_log: a signal under v2"; return 1; }
    MSG_V2=$(jget 'E("sent")[0]["msg_id"]')
    sleep 1 # a checkpoint covers everything
    audit
    N_RECORDS=$(jget 'len(L)')
    return 0
}

# seq_of PYTHON_EXPR: the seq of the first record of the broker store's
# audit records (testpeer audit) for which the expression over r holds.
seq_of() {
    "$PEER" audit --db "${2:-broker}/store" >"$T/.seq.json" 2>/dev/null
    "$PY" - "$T/.seq.json" "$1" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print(next(r["seq"] for r in L if eval(sys.argv[2])))
PY
}

# verify_fails_at DESCRIPTION SEQ [DB] [VERIFY OPTIONS]: verify exits 3 and
# names record SEQ as the first inconsistency.
verify_fails_at() {
    local what=$1 seq=$2 db=${3:-broker}
    shift 3 2>/dev/null || shift $#
    run "$AUDIT" verify --db "$db" --anchor admin/network.pub "$@"
    expect 3 "$what: verify fails"
    says "verification failed at record $seq:" "$what: found at record $seq"
}

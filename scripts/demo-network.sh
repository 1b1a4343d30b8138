#!/usr/bin/env bash
# The four-partner demonstration of keten, narrated step by step.
#
#   scripts/demo-network.sh KETEN-KEYS KETEN-NODE KETEN-BROKER KETEN-AUDIT
#
# In a temporary directory: three administrators (2 of 3 must sign), a
# municipality, the police, the tax authority, a housing corporation and the
# broker enrol; a sharing policy is published; signals, a query and its
# replies are exchanged (the police node is offline for part of it); an
# attempt outside the policy is refused; the partners cosign the broker's
# checkpoints; the operator exports the audit tables and an auditor verifies
# them against a checkpoint kept by the police node, then prints the replay
# and the statistics. Every process started here is stopped at the end. Exits
# non-zero if any step did not do what it says.
set -uo pipefail

KEYS=$(realpath "${1:?usage: demo-network.sh KETEN-KEYS KETEN-NODE KETEN-BROKER KETEN-AUDIT}")
NODE=$(realpath "${2:?keten-node}")
BROKER=$(realpath "${3:?keten-broker}")
AUDIT=$(realpath "${4:?keten-audit}")

T=$(mktemp -d /tmp/keten-demo-XXXXXX)
cd "$T" || exit 1
declare -A PID=()
FAILED=0
STEP=0

stop() {
    local name=$1 pid=${PID[$1]:-} i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "PID[$name]"
}
stop_all() {
    local name
    for name in "${!PID[@]}"; do
        stop "$name"
    done
}
cleanup() {
    stop_all
    cd / && rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() {
    STEP=$((STEP + 1))
    printf '\n%d. %s\n' "$STEP" "$*"
}
note() { printf '   %s\n' "$*"; }
fail() {
    printf '   FAILED: %s\n' "$*"
    FAILED=1
}
# must DESCRIPTION CMD...: run CMD quietly; on failure show its output and stop.
must() {
    local what=$1
    shift
    local out
    if ! out=$("$@" 2>&1); then
        fail "$what"
        printf '%s\n' "$out" | sed 's/^/   | /'
        exit 1
    fi
}
wait_until() {
    local limit=$1
    shift
    for _ in $(seq 1 $((limit * 5))); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

BROKER_EP="ipc://$T/broker.sock"
start_broker() {
    "$BROKER" run --home broker --anchor admin/network.pub --directory directory.signed \
        --listen "$BROKER_EP" --checkpoint-ms 300 >>broker.log 2>&1 &
    PID[broker]=$!
}
start_node() {
    "$NODE" run --home "$1" --anchor admin/network.pub --directory directory.signed \
        --broker "$BROKER_EP" >>"node-$1.log" 2>&1 &
    PID[$1]=$!
    wait_until 20 "$NODE" status --home "$1" || { fail "node $1 did not start"; exit 1; }
}
connected() {
    "$NODE" status --home "$1" --json | grep -q '"connected": *true'
}
# inbox_has NODE MSG_ID: the node has received MSG_ID.
inbox_has() {
    "$NODE" inbox --home "$1" --json --all 2>/dev/null | grep -q "\"msg_id\": *\"$2\""
}

echo "keten demonstration, in $T"
echo "(test keys without passphrases: for demonstrations only)"

say "Three administrators set up the network 'regio-midden'; any 2 of the 3 must sign"
note "every directory version (the four-eyes principle)."
must "init" "$KEYS" init --dir admin --network regio-midden --threshold 2 --admins 3 \
    --no-passphrase
note "network.pub, the trust anchor every party gets out of band:"
note "sha256 $(sha256sum admin/network.pub | cut -c1-64)"

say "They register what signals may be about, so that no free text reaches the log."
must "register" "$KEYS" register --dir admin --category woonfraude,adrescheck \
    --purpose riec-convenant/art-5

say "Each partner makes its own keys on its own machine; private keys never leave it."
for spec in "gemeente:municipality:Gemeente Diemen" "politie:police:Politie Midden-Nederland" \
    "belastingdienst:tax:Belastingdienst" "woningcorporatie:housing:Woonstad"; do
    IFS=: read -r id role org <<<"$spec"
    must "keygen $id" "$NODE" keygen --home "$id" --id "$id" --role "$role" --org "$org" \
        --no-passphrase
    note "$id ($role, $org)"
done
must "broker keygen" "$BROKER" keygen --home broker --no-passphrase
note "broker"

say "The administrators check each request's proof of possession and approve it."
for id in gemeente politie belastingdienst woningcorporatie broker; do
    must "approve $id" "$KEYS" approve --dir admin "$id/identity.request"
done
note "5 certificates in the next directory version"

say "The sharing agreement, as policy rules (anything not allowed is refused):"
must "rule 1" "$KEYS" policy --dir admin allow --from role:municipality \
    --to role:police,role:tax --category woonfraude --kind signal --purpose riec-convenant/art-5
must "rule 2" "$KEYS" policy --dir admin allow --from role:municipality \
    --to role:police,role:tax,role:housing --category adrescheck --kind query \
    --purpose riec-convenant/art-5
must "rule 3" "$KEYS" policy --dir admin allow --from role:police,role:tax,role:housing \
    --to role:municipality --category adrescheck --kind reply --purpose riec-convenant/art-5
"$KEYS" policy --dir admin list | sed 's/^/   /'

say "Administrator 1 publishes directory version 1; administrator 2 adds the second signature."
must "publish" "$KEYS" publish --dir admin --out directory.signed --admin 1
must "sign" "$KEYS" sign --dir admin directory.signed --admin 2
if "$KEYS" show directory.signed --anchor admin/network.pub >show.txt 2>&1; then
    note "$(grep -E '^[0-9]+ of [0-9]+ signatures' show.txt)"
    note "$(grep -E '^verification against' show.txt)"
else
    fail "the directory does not verify"
    exit 1
fi

say "The broker starts; then the four partner nodes connect (CurveZMQ, keys from the directory)."
start_broker
for id in gemeente politie belastingdienst woningcorporatie; do
    start_node "$id"
done
for id in gemeente politie belastingdienst woningcorporatie; do
    wait_until 30 connected "$id" || { fail "$id did not connect"; exit 1; }
done
note "all four connected"

cat >signal.json <<'EOF'
{"type": "woonfraude", "purpose": "riec-convenant/art-5",
 "summary": "Adres staat op naam van 9 personen; ramen afgeplakt",
 "nature": "soft", "grading": {"source": "B", "information": "2"},
 "handling": "TLP:AMBER", "observed_at": "2026-11-19T10:30:00Z", "observed_by": "handhaver",
 "subjects": [{"kind": "address", "value": "Hoofdstraat 1, 1111 AA Diemen"}]}
EOF
say "The municipality sends a soft signal about an address to the police and the tax authority."
SIG=$("$NODE" send --home gemeente --to role:police,role:tax --signal signal.json --wait 2>send.err)
if [ -z "$SIG" ]; then
    fail "send"
    sed 's/^/   | /' send.err
    exit 1
fi
note "msg_id $SIG: signed, encrypted to exactly those two, acknowledged by the broker"
note "after it was written durably to the audit log."
for id in politie belastingdienst; do
    if wait_until 30 inbox_has "$id" "$SIG"; then
        note "$id received it and signed a receipt; it reads:"
        "$NODE" show --home "$id" "$SIG" 2>/dev/null | grep -E '"summary"|summary' | head -1 \
            | sed 's/^ */     /'
    else
        fail "$id did not receive the signal"
    fi
done
if "$NODE" inbox --home woningcorporatie --json --all | grep -q "$SIG"; then
    fail "the housing corporation received a signal not meant for it"
else
    note "the housing corporation did not get it, and the broker could not read it."
fi

say "The police node goes offline (its operator restarts the server)."
stop politie
note "politie stopped"

cat >query.json <<'EOF'
{"type": "adrescheck", "purpose": "riec-convenant/art-5",
 "summary": "Thematische adrescontrole: bekend bij uw organisatie?",
 "nature": "hard", "handling": "TLP:AMBER",
 "subjects": [{"kind": "address", "value": "Hoofdstraat 1, 1111 AA Diemen"}]}
EOF
say "The municipality sends a thematic address check (a query) to police, tax and housing."
Q=$("$NODE" send --home gemeente --to role:police,role:tax,role:housing --kind query \
    --signal query.json --wait 2>send.err)
[ -n "$Q" ] || { fail "query"; sed 's/^/   | /' send.err; exit 1; }
note "query $Q"

reply_json() {
    cat <<EOF
{"type": "adrescheck", "purpose": "riec-convenant/art-5", "summary": "$1",
 "nature": "hard", "handling": "TLP:AMBER",
 "subjects": [{"kind": "address", "value": "Hoofdstraat 1, 1111 AA Diemen"}]}
EOF
}
say "The tax authority and the housing corporation answer; the police are still offline."
reply_json "Geen personeel geregistreerd op dit adres" >reply-tax.json
reply_json "Huurder zelden aanwezig; melding woonfraude 2025" >reply-housing.json
reply_json "Bekend: 2 meldingen in 2026" >reply-police.json
for pair in belastingdienst:reply-tax.json woningcorporatie:reply-housing.json; do
    id=${pair%%:*}
    wait_until 30 inbox_has "$id" "$Q" || { fail "$id did not receive the query"; continue; }
    must "reply from $id" "$NODE" reply --home "$id" "$Q" --signal "${pair#*:}"
    note "$id answered"
done

say "The police node comes back and gets its backlog: the query waited at the broker."
start_node politie
if wait_until 30 inbox_has politie "$Q"; then
    note "politie received the query after reconnecting"
    must "reply from politie" "$NODE" reply --home politie "$Q" --signal reply-police.json
    note "politie answered"
else
    fail "politie did not get its backlog"
fi

answered() {
    [ "$("$NODE" inbox --home gemeente --json --all | grep -c "\"in_reply_to\": *\"$Q\"")" -ge 3 ]
}
if wait_until 30 answered; then
    note "the municipality has all three replies, each linked to the query:"
    "$NODE" status --home gemeente "$Q" 2>/dev/null | sed 's/^/     /' | head -12
else
    fail "not all replies arrived"
fi

say "The municipality tries to send a woonfraude signal to the housing corporation:"
note "the sharing agreement does not allow it."
if OUT=$("$NODE" send --home gemeente --to role:housing --signal signal.json --wait 2>&1); then
    fail "a send outside the policy was accepted"
else
    note "refused: $(printf '%s' "$OUT" | head -1)"
fi

say "The partners witness the broker's audit log: each checks that every new checkpoint"
note "is consistent with the one it saw before, and cosigns it."
witnessed() {
    "$NODE" checkpoint --home politie --json 2>/dev/null | grep -q '"witnessed": *true'
}
if wait_until 30 witnessed; then
    "$NODE" checkpoint --home politie --out politie-checkpoint.note 2>/dev/null
    note "the police node keeps this checkpoint, cosigned by a quorum of partners:"
    sed 's/^/     /' politie-checkpoint.note
else
    fail "no checkpoint was witnessed by a quorum"
fi
for id in gemeente politie belastingdienst woningcorporatie; do
    "$NODE" status --home "$id" >/dev/null 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || fail "$id reports an alarm (status exit $rc)"
done
note "no partner raised an alarm"

say "The broker's operator exports the audit tables (no queues, no content) for the auditor."
must "export" "$AUDIT" export --db broker --out audit-export
note "$(ls audit-export | tr '\n' ' ')"

say "The auditor verifies the export against the checkpoint kept by the police node."
if "$AUDIT" verify --db audit-export --anchor admin/network.pub \
    --checkpoint politie-checkpoint.note >verify.txt 2>&1; then
    sed 's/^/   /' verify.txt
else
    fail "verification of the audit log failed"
    sed 's/^/   | /' verify.txt
fi

say "The auditor replays the exchange history (metadata only: who, what kind, when, why):"
"$AUDIT" replay --db audit-export | sed 's/^/   /' | head -40

say "And counts the exchanges per pair of partners and category, for the annual report:"
"$AUDIT" stats --db audit-export --by pair,category | sed 's/^/   /'

say "Everything stops."
stop_all
note "all processes stopped"

if [ "$FAILED" -ne 0 ]; then
    echo
    echo "The demonstration did NOT do everything it said (see FAILED above)."
    exit 1
fi
echo
echo "The demonstration did everything it said."

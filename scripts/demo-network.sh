#!/usr/bin/env bash
# The four-partner demonstration of keten, narrated step by step.
#
#   scripts/demo-network.sh [--keep] KETEN-KEYS KETEN-NODE KETEN-BROKER KETEN-AUDIT
#   scripts/demo-network.sh --check-absent DIR|FILE... -- WORD...
#
# --keep leaves the network running at the end: the broker and the four
# nodes go on, and the municipality's and the police's web addresses are
# printed with a token to sign in with, until Ctrl-C (SIGINT or SIGTERM);
# then every process is stopped and the network's folder is kept (its path
# and what to look at are printed). Without it the demonstration stops
# everything by itself and removes the folder.
# --check-absent runs step 8's check alone: exit 0 when none of the WORDs
# (fixed strings) occurs in any file under the paths, 1 when one does, 2
# when a path could not be searched.
#
# In a temporary directory: three administrators (2 of 3 must sign), a
# municipality, the police, the tax authority, a housing corporation and the
# broker enrol; a sharing policy is published; signals, a query and its
# replies are exchanged (the police node is offline for part of it); an
# attempt outside the policy is refused; a clerk and an analyst sign in to
# their nodes' web pages (on loopback ports, checked with curl); the
# partners cosign the broker's checkpoints; the operator exports the audit
# tables and an auditor verifies them against a checkpoint kept by the
# police node, then prints the replay and the statistics. Every step says in plain words what it means for the
# partners. Every process started here is stopped at the end. Exits non-zero
# if any step did not do what it says.
set -uo pipefail

# check_absent PATH... -- WORD...: none of the words occurs in any file
# under the paths (binary files included). Exit 0 absent, 1 present (the
# files are named), 2 a path is missing or could not be searched: "could not
# look" is never "not there".
check_absent() {
    local paths=() words=() p rc
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        paths+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    words=("$@")
    if [ ${#paths[@]} -eq 0 ] || [ ${#words[@]} -eq 0 ]; then
        echo "check_absent: no path or no word" >&2
        return 2
    fi
    for p in "${paths[@]}"; do
        [ -e "$p" ] || { echo "check_absent: $p does not exist" >&2; return 2; }
    done
    local args=()
    for p in "${words[@]}"; do
        args+=(-e "$p")
    done
    grep -r -a -l -F "${args[@]}" -- "${paths[@]}"
    rc=$?
    case $rc in
    0) return 1 ;;
    1) return 0 ;;
    *) return 2 ;;
    esac
}
if [ "${1:-}" = --check-absent ]; then
    shift
    check_absent "$@"
    exit $?
fi

KEEP=0
if [ "${1:-}" = --keep ]; then
    KEEP=1
    shift
fi
KEYS=$(realpath "${1:?usage: demo-network.sh [--keep] KETEN-KEYS KETEN-NODE KETEN-BROKER KETEN-AUDIT}")
NODE=$(realpath "${2:?keten-node}")
BROKER=$(realpath "${3:?keten-broker}")
AUDIT=$(realpath "${4:?keten-audit}")
# The web page the nodes serve: this source tree's web/ (the programs run
# from the build folder, not installed).
WEB=$(realpath "$(dirname "$0")/../web")
[ -f "$WEB/index.html" ] || { echo "demo-network.sh: no web page in $WEB" >&2; exit 1; }

T=$(mktemp -d /tmp/keten-demo-XXXXXX)
cd "$T" || exit 1
declare -A PID=()
STARTED=()
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
# keep_notice: where the kept folder is and what to look at in it.
keep_notice() {
    echo
    echo "The network's folder is kept: $T"
    echo "  broker/                  the broker's home: its keys and its store (no readable content)"
    echo "  broker.log, node-*.log   what each program logged (metadata only)"
    echo "  gemeente/ politie/ belastingdienst/ woningcorporatie/   each partner's home"
    echo "  signal.json, query.json, reply-*.json   the signals as the partners wrote them"
    echo "  audit-export/            the auditor's copy of the audit log (plain files)"
    echo "  politie-checkpoint.note  the checkpoint the police kept"
    echo "  directory.signed         the directory (members and rules), signed by 2 administrators"
    echo "  web-check/               what the web pages answered the demonstration's requests"
    echo "Try: $AUDIT replay --db $T/audit-export --msg ${SIG:-MSG_ID}"
    echo "Remove it with: rm -rf $T"
}
# SLEEPER: what --keep waits on at the end (not one of the network's processes).
SLEEPER=
cleanup() {
    [ -z "$SLEEPER" ] || kill -TERM "$SLEEPER" 2>/dev/null
    stop_all
    if [ "$KEEP" -eq 0 ]; then
        cd / && rm -rf "$T"
    else
        keep_notice
    fi
}
trap cleanup EXIT
# A closed terminal (SIGHUP) stops everything too: nothing is left running
# behind a terminal that is gone.
trap 'exit 130' INT TERM
trap 'exit 129' HUP

say() {
    STEP=$((STEP + 1))
    printf '\n%d. %s\n' "$STEP" "$*"
}
note() { printf '   %s\n' "$*"; }
# plain TEXT...: what the step means for a partner's security officer, as
# one paragraph wrapped to fit a terminal.
plain() { printf 'In plain words: %s\n' "$*" | fmt -w 84 | sed 's/^/   /'; }
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
    STARTED+=($!)
}
# The loopback ports of the web pages: the municipality's and the police's
# nodes serve theirs (API_PORT, set before the nodes start).
declare -A API_PORT=()
start_node() {
    local api=()
    [ -z "${API_PORT[$1]:-}" ] || api=(--api-listen "127.0.0.1:${API_PORT[$1]}" --web-root "$WEB")
    "$NODE" run --home "$1" --anchor admin/network.pub --directory directory.signed \
        --broker "$BROKER_EP" "${api[@]}" >>"node-$1.log" 2>&1 &
    PID[$1]=$!
    STARTED+=($!)
    wait_until 20 "$NODE" status --home "$1" || { fail "node $1 did not start"; exit 1; }
}
connected() {
    "$NODE" status --home "$1" --json | grep -q '"connected": *true'
}
# inbox_has NODE MSG_ID: the node has received MSG_ID.
inbox_has() {
    "$NODE" inbox --home "$1" --json --all 2>/dev/null | grep -q "\"msg_id\": *\"$2\""
}
# record_of EXPORT SEQ OUT: write record SEQ (< 256) of an audit export to
# OUT, read from its entry bundle (each record a 2-byte big-endian length,
# then the record; records of 64 KiB or more, which only a very large
# directory makes, do not occur here).
record_of() {
    local bundle off=0 i len hi lo
    [ "$2" -lt 256 ] || return 1
    # The full bundle of the first 256 records, or else the widest partial one.
    if [ -f "$1/tile/entries/000" ]; then
        bundle=$1/tile/entries/000
    else
        bundle=$(find "$1/tile/entries/000.p" -type f -name '[0-9]*' -printf '%f\n' 2>/dev/null \
            | sort -n | tail -1)
        [ -n "$bundle" ] || return 1
        bundle=$1/tile/entries/000.p/$bundle
    fi
    for ((i = 0; i <= $2; i++)); do
        read -r hi lo < <(od -An -tu1 -j "$off" -N2 "$bundle")
        [ -n "${lo:-}" ] || return 1
        len=$((hi * 256 + lo))
        if [ "$i" -eq "$2" ]; then
            tail -c +$((off + 3)) "$bundle" | head -c "$len" >"$3"
            [ "$(stat -c %s "$3")" -eq "$len" ]
            return
        fi
        off=$((off + 2 + len))
    done
}

echo "keten demonstration, in $T"
echo "(test keys without passphrases: for demonstrations only)"
echo "Each step says what happens, shows the programs' own output, and says 'In plain words'"
echo "what it means for the partners' security officers."

say "Three administrators set up the network 'regio-midden'; any 2 of the 3 must sign"
note "every directory version (the four-eyes principle)."
must "init" "$KEYS" init --dir admin --network regio-midden --threshold 2 --admins 3 \
    --no-passphrase
note "network.pub, the trust anchor every party gets out of band:"
note "sha256 $(sha256sum admin/network.pub | cut -c1-64)"
plain "no one can change who belongs to the network or what may be shared unless two of" \
    "the three administrators sign; every partner checks their signatures with network.pub."

say "They register what signals may be about, so that no free text reaches the log."
must "register" "$KEYS" register --dir admin --category woonfraude,adrescheck \
    --purpose riec-convenant/art-5
plain "a message's label can only be one of these registered words (the category" \
    "'woonfraude' or 'adrescheck', the purpose 'riec-convenant/art-5', the article of the" \
    "agreement), so the permanent record never holds a name, an address or a story."

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
plain "each organisation holds its own keys; no one else, not even the broker's operator," \
    "can sign in its name or read what is sent to it."

say "The administrators check each request's proof of possession and approve it."
for id in gemeente politie belastingdienst woningcorporatie broker; do
    must "approve $id" "$KEYS" approve --dir admin "$id/identity.request"
done
note "5 certificates in the next directory version"
plain "only the organisations the administrators approved can take part; each certificate" \
    "ties a key to one organisation and its role (municipality, police, tax, housing)."

say "The sharing agreement, as policy rules (anything not allowed is refused):"
must "rule 1" "$KEYS" policy --dir admin allow --from role:municipality \
    --to role:police,role:tax --category woonfraude --kind signal --purpose riec-convenant/art-5
must "rule 2" "$KEYS" policy --dir admin allow --from role:municipality \
    --to role:police,role:tax,role:housing --category adrescheck --kind query \
    --purpose riec-convenant/art-5
must "rule 3" "$KEYS" policy --dir admin allow --from role:police,role:tax,role:housing \
    --to role:municipality --category adrescheck --kind reply --purpose riec-convenant/art-5
"$KEYS" policy --dir admin list | sed 's/^/   /'
plain "rules 1, 2 and 3 are the articles of the sharing agreement in a form the computers" \
    "enforce; every message in the log names the rule that allowed it."

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
plain "the partners and the broker accept this list of members and rules (the directory)" \
    "only because two administrators signed it."

say "The broker starts; then the four partner nodes connect (CurveZMQ, keys from the directory)."
# Two free loopback ports, asked of the system at once so that they differ
# (one taken by another program before the node binds it makes that node's
# start fail, and the step says so).
if ! PORTS=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' 2>&1); then
    fail "no free loopback port for the web pages"
    printf '%s\n' "$PORTS" | sed 's/^/   | /'
    exit 1
fi
read -r "API_PORT[gemeente]" "API_PORT[politie]" <<<"$PORTS"
start_broker
for id in gemeente politie belastingdienst woningcorporatie; do
    start_node "$id"
done
for id in gemeente politie belastingdienst woningcorporatie; do
    wait_until 30 connected "$id" || { fail "$id did not connect"; exit 1; }
done
note "all four connected"
note "the municipality's node serves its web page at http://127.0.0.1:${API_PORT[gemeente]}/,"
note "the police's at http://127.0.0.1:${API_PORT[politie]}/ (on this machine only)"
plain "the connections are encrypted, and each side checks the other's key against the" \
    "signed directory: a machine that is not a member cannot connect."

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
    note "the housing corporation did not get it."
fi
# What the broker keeps of the signal: its record in the audit log, read from
# an export made now (the same files an auditor gets).
must "export after the signal" "$AUDIT" export --db broker --out audit-after-signal
SEQ=$("$AUDIT" replay --db audit-after-signal --msg "$SIG" --json 2>/dev/null \
    | grep '"event": *"submitted"' | grep -o '"seq": *[0-9]*' | grep -o '[0-9]*$')
if [ -n "$SEQ" ] && record_of audit-after-signal "$SEQ" signal-record.bin; then
    note "what the broker received and keeps of it, record $SEQ of its audit log"
    note "($(stat -c %s signal-record.bin) bytes; the first 128 as hexadecimal, with the readable characters):"
    od -A d -t x1z -N 128 -v signal-record.bin | sed 's/^/     /'
    note "(the rest: the label the sender signed, a 32-byte fingerprint of the encrypted"
    note "content and the sender's signature; the encrypted content itself the broker deletes"
    note "once both recipients have confirmed they stored it)"
    note "what the police read, decrypted with their own key:"
    "$NODE" show --home politie "$SIG" 2>/dev/null | grep -E '"summary"' | head -1 \
        | sed 's/^ */     /'
else
    fail "the signal's record is not in the broker's audit log"
fi
plain "the broker can read who sent it to whom, the registered category and purpose and" \
    "the rule that allowed it, but not a word of the signal itself: it only has the" \
    "content encrypted for the police and the tax authority, and keeps only a fingerprint" \
    "of it (32 bytes) in its log."
if [ -n "$(find broker -type f -size +0 2>/dev/null | head -1)" ]; then
    check_absent broker broker.log audit-after-signal -- "ramen afgeplakt" "9 personen" \
        "Hoofdstraat 1" >absent.txt 2>&1
    case $? in
    0) note "checked: none of the words \"ramen afgeplakt\", \"9 personen\" or \"Hoofdstraat 1\""
       note "occurs in any of the broker's files, its log or its audit export (searched byte by byte)." ;;
    1) fail "the signal's words occur in the broker's files:"
       sed 's/^/   | /' absent.txt ;;
    *) fail "the broker's files could not be searched:"
       sed 's/^/   | /' absent.txt ;;
    esac
else
    fail "the broker's home holds no files to search"
fi

say "The police node goes offline (its operator restarts the server)."
stop politie
note "politie stopped"
plain "a partner that is offline loses nothing: what is sent to it waits at the broker," \
    "still encrypted, until it comes back."

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
plain "a query asks the partners whether they know something; each answer is a message of" \
    "its own, linked to the query."

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
plain "each answer is signed by the partner that gives it and encrypted so that only the" \
    "municipality can read it; the police's copy of the query is still waiting."

say "The police node comes back and gets its backlog: the query waited at the broker."
start_node politie
if wait_until 30 inbox_has politie "$Q"; then
    note "politie received the query after reconnecting"
    REPLY_POLITIE=$("$NODE" reply --home politie "$Q" --signal reply-police.json 2>reply.err)
    [ -n "$REPLY_POLITIE" ] || { fail "reply from politie"; sed 's/^/   | /' reply.err; exit 1; }
    note "politie answered"
else
    fail "politie did not get its backlog"
fi

answered() {
    [ "$("$NODE" inbox --home gemeente --json --all | grep -c "\"in_reply_to\": *\"$Q\"")" -ge 3 ]
}
if wait_until 30 answered; then
    note "the municipality has all three replies, each linked to the query:"
    "$NODE" status --home gemeente "$Q" >status-query.txt 2>/dev/null
    sed 's/^/     /' status-query.txt | head -12
    LEAF=$(grep -o 'audit leaf [0-9]*' status-query.txt | grep -o '[0-9]*$')
    plain "'receipted' means that partner's node signed that it has stored the query;" \
        "'replied' that it answered. 'accepted (audit leaf ${LEAF:-?})' means the broker wrote the query" \
        "as record ${LEAF:-?} of its audit log (counted from 0), and the municipality's node checked" \
        "the broker's proof that this record is in the signed log (inclusion proven)."
else
    fail "not all replies arrived"
fi

say "The municipality tries to send a woonfraude signal to the housing corporation:"
note "the sharing agreement does not allow it."
if OUT=$("$NODE" send --home gemeente --to role:housing --signal signal.json --wait 2>&1); then
    fail "a send outside the policy was accepted"
else
    note "refused: $(printf '%s' "$OUT" | head -1)"
    case $OUT in
    *"rule 0"*) ;;
    *) fail "the refusal does not name the rule that decided (rule 0)" ;;
    esac
fi
plain "'rule 0' means that no rule of the agreement allows it, and what the agreement does" \
    "not allow is refused. The municipality's own node checks the same signed agreement and" \
    "refused it before anything left; had it been sent, the broker would have refused it" \
    "too and recorded the attempt in its audit log."

# web PORT METHOD PATH OUT [CURL ARGS...]: one request to a node's web
# address as a browser on this machine makes it (Host the page's own
# address); prints the HTTP status; the answer in web-check/OUT, its
# headers in web-check/OUT.hdr, curl's complaints in web-check/OUT.err.
web() {
    local port=$1 method=$2 path=$3 out=web-check/$4
    shift 4
    mkdir -p web-check
    curl -sS --max-time 10 -X "$method" -H "Host: 127.0.0.1:$port" -D "$out.hdr" -o "$out" \
        -w '%{http_code}' "$@" "http://127.0.0.1:$port$path" 2>"$out.err"
}
# header_has FILE NAME VALUE: the headers in FILE hold a header NAME (in
# any case) whose value contains VALUE.
header_has() {
    tr -d '\r' <"$1" | grep -qiE "^$2: " || return 1
    tr -d '\r' <"$1" | grep -iE "^$2: " | sed -E 's/^[^:]*: //' | grep -qF -- "$3"
}
# token_for NODE NAME VAR: a token for a person (read, send, acknowledge),
# made by the node's operator over its local socket (shown once), in VAR.
token_for() {
    local tok
    printf -v "$3" '%s' ""
    tok=$("$NODE" token create --home "$1" --name "$2" --scope read,send,ack 2>token.err)
    if ! [[ $tok =~ ^ktn_[A-Za-z0-9_-]{43}$ ]]; then
        fail "no token for the $2 at $1"
        sed 's/^/   | /' token.err
        return 1
    fi
    printf -v "$3" '%s' "$tok"
}
# sign_in NODE TOKEN WHO: open a web session at NODE's page with TOKEN, as
# the page does when someone signs in; sets COOKIE and CSRF.
sign_in() {
    local port=${API_PORT[$1]} code
    COOKIE='' CSRF=''
    code=$(web "$port" POST /v1/session "session-$1.json" -H "Origin: http://127.0.0.1:$port" \
        -H 'Content-Type: application/json; charset=utf-8' --data-binary "{\"token\":\"$2\"}")
    if [ "$code" != 201 ] || ! grep -q "\"actor\": *\"token:$3\"" "web-check/session-$1.json"; then
        fail "the $3's token does not open a session at $1 (HTTP $code)"
        cat "web-check/session-$1.json" "web-check/session-$1.json.err" 2>/dev/null | sed 's/^/   | /'
        return 1
    fi
    if ! header_has "web-check/session-$1.json.hdr" Set-Cookie "keten_session=" \
        || ! tr -d '\r' <"web-check/session-$1.json.hdr" | grep -iE '^Set-Cookie: ' | grep -q 'HttpOnly; SameSite=Strict'; then
        fail "the session's cookie is not HttpOnly and SameSite=Strict"
        return 1
    fi
    COOKIE=$(tr -d '\r' <"web-check/session-$1.json.hdr" | sed -nE 's/^[Ss]et-[Cc]ookie: *(keten_session=[^;]*).*/\1/p')
    CSRF=$(grep -o '"csrf_token": *"[^"]*"' "web-check/session-$1.json" | sed -E 's/.*"([^"]*)"$/\1/')
    if [ -z "$COOKIE" ] || [ -z "$CSRF" ]; then
        fail "no session cookie or CSRF token from $1"
        return 1
    fi
}

say "The web page: a clerk at the municipality and an analyst at the police sign in."
PG=${API_PORT[gemeente]} PP=${API_PORT[politie]}
token_for gemeente clerk CLERK
token_for politie analyst ANALYST
note "each node's operator made an access token (read, send, acknowledge), shown only once:"
note "  the clerk's, for http://127.0.0.1:$PG/   ${CLERK:-(none)}"
note "  the analyst's, for http://127.0.0.1:$PP/   ${ANALYST:-(none)}"
code=$(web "$PG" GET / page.html)
if [ "$code" = 200 ] && grep -qi '<html' web-check/page.html \
    && header_has web-check/page.html.hdr Content-Security-Policy "default-src 'self'; script-src 'self'"; then
    note "the municipality's page answers (HTTP 200), with the rule that it runs only its own"
    note "files: Content-Security-Policy: default-src 'self'; script-src 'self'; ..."
else
    fail "the municipality's page does not answer as it should (HTTP $code)"
    sed 's/^/   | /' web-check/page.html.err 2>/dev/null
fi
if [ -n "$CLERK" ] && sign_in gemeente "$CLERK" clerk; then
    note "the clerk signs in: the node opens a session (a cookie the page's scripts cannot read)"
    code=$(web "$PG" GET /v1/inbox inbox-clerk.json -H "Cookie: $COOKIE")
    n=$(grep -o "\"in_reply_to\": *\"$Q\"" web-check/inbox-clerk.json 2>/dev/null | wc -l)
    if [ "$code" = 200 ] && [ "$n" -eq 3 ]; then
        note "and with it the page lists the clerk's inbox: the three answers to the query"
    else
        fail "the clerk's inbox through the session (HTTP $code, $n answers to the query, 3 expected)"
    fi
    ONE=$(grep -oE '"msg_id": *"[0-9a-f]{32}"' web-check/inbox-clerk.json | head -1 | grep -oE '[0-9a-f]{32}')
    code=$(web "$PG" POST "/v1/inbox/${ONE:-0}/ack" ack-elsewhere.json -H "Cookie: $COOKIE" \
        -H "Origin: https://elsewhere.example")
    if [ "$code" = 403 ]; then
        note "another web site's page, in the clerk's browser, tries to acknowledge a message"
        note "with the clerk's session: refused (HTTP 403)"
    else
        fail "a request from another site with the clerk's session was not refused (HTTP $code)"
    fi
    code=$(web "$PG" DELETE /v1/session logout.json -H "Cookie: $COOKIE" \
        -H "Origin: http://127.0.0.1:$PG" -H "X-CSRF-Token: $CSRF")
    after=$(web "$PG" GET /v1/inbox inbox-after.json -H "Cookie: $COOKIE")
    if [ "$code" = 204 ] && [ "$after" = 401 ]; then
        note "the clerk signs out; the same cookie then opens nothing (HTTP 401)"
    else
        fail "signing out (HTTP $code) did not end the session (the inbox then: HTTP $after)"
    fi
fi
if [ -n "$ANALYST" ]; then
    code=$(web "$PG" POST /v1/session session-wrong.json -H "Origin: http://127.0.0.1:$PG" \
        -H 'Content-Type: application/json; charset=utf-8' --data-binary "{\"token\":\"$ANALYST\"}")
    if [ "$code" = 401 ]; then
        note "the analyst's token does not open the municipality's page (HTTP 401): a token"
        note "belongs to one node"
    else
        fail "the police's token opened the municipality's page (HTTP $code)"
    fi
    if sign_in politie "$ANALYST" analyst; then
        code=$(web "$PP" GET /v1/inbox inbox-analyst.json -H "Cookie: $COOKIE")
        if [ "$code" = 200 ] && grep -q "\"msg_id\": *\"$SIG\"" web-check/inbox-analyst.json \
            && grep -q "\"msg_id\": *\"$Q\"" web-check/inbox-analyst.json; then
            note "the analyst signs in at the police's page and sees the signal and the query"
        else
            fail "the analyst's inbox through the session (HTTP $code) lacks the signal or the query"
        fi
    fi
fi
# The municipality's access log: the clerk's sign-in, inbox and sign-out,
# and the three refused requests (the other site's, logged under the clerk
# whose session it tried to use; the cookie after signing out; the police's
# token).
n=$(grep -c '"actor": *"token:clerk"' gemeente/access.log 2>/dev/null)
d=$(grep -c '"result": *"denied"' gemeente/access.log 2>/dev/null)
if [ "${n:-0}" -ge 4 ] && [ "${d:-0}" -ge 3 ]; then
    note "the municipality's access log has a line for each of these requests: $n for the clerk,"
    note "$d refused; who did what and when, never what a message says"
else
    fail "the municipality's access log lacks the clerk's requests (${n:-0} of 4) or the refused ones (${d:-0} of 3)"
fi
plain "people who do not work on the command line use their own node's web page in a" \
    "browser: the clerk records signals and follows up queries, the analyst reads what" \
    "came in, acknowledges it and answers. Here each signs in with an access token the" \
    "node's operator made for them, shown once, like a new password. In a municipality" \
    "people sign in with the organisation's own single sign-on instead: a reverse proxy" \
    "in front of the node checks who they are and tells the node (docs/integration.md)." \
    "The page comes from the partner's own node and loads nothing from anywhere else, so" \
    "it works without internet. It answers on this machine only, and what another web" \
    "site makes a signed-in browser send is refused."

say "The partners witness the broker's audit log: each checks that every new checkpoint"
note "is consistent with the one it saw before, and cosigns it."
# The police's reply is the last message: wait for a witnessed checkpoint
# that covers its record.
REPLY_LEAF=$("$NODE" status --home politie "${REPLY_POLITIE:-none}" 2>/dev/null \
    | grep -o 'audit leaf [0-9]*' | grep -o '[0-9]*$')
witnessed() {
    local size
    "$NODE" checkpoint --home politie --json >checkpoint.json 2>/dev/null || return 1
    grep -q '"witnessed": *true' checkpoint.json || return 1
    size=$(grep -o '"tree_size": *[0-9]*' checkpoint.json | grep -o '[0-9]*$')
    [ -n "$size" ] && [ -n "$REPLY_LEAF" ] && [ "$size" -gt "$REPLY_LEAF" ]
}
if wait_until 30 witnessed; then
    "$NODE" checkpoint --home politie --out politie-checkpoint.note 2>/dev/null
    note "the police node keeps this checkpoint, cosigned by a quorum of partners:"
    sed 's/^/     /' politie-checkpoint.note
    CP_SIZE=$(sed -n 2p politie-checkpoint.note)
    plain "a checkpoint is the broker's signed statement of how long its audit log is and" \
        "what it contains: the name of the log, the number of records ($CP_SIZE), a fingerprint" \
        "of all of them together, and the directory version in force. Below the empty line" \
        "the broker signs it, and the partners that checked it cosign it (the lines with —)." \
        "Once the police hold this, the broker cannot change or remove any of these $CP_SIZE" \
        "records without every later checkpoint giving it away."
else
    fail "no checkpoint covering the police's reply (audit leaf ${REPLY_LEAF:-?}) was witnessed by a quorum"
fi
for id in gemeente politie belastingdienst woningcorporatie; do
    "$NODE" status --home "$id" >/dev/null 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || fail "$id reports an alarm (status exit $rc)"
done
note "no partner raised an alarm"
plain "had the broker shown two partners different histories, or rewritten its log, the" \
    "partners' nodes would have raised an alarm here."

say "The broker's operator exports the audit log (no queues, no content) for the auditor."
if "$AUDIT" export --db broker --out audit-export >export.txt 2>&1; then
    sed 's/^/   /' export.txt
else
    fail "export"
    sed 's/^/   | /' export.txt
    exit 1
fi
note "a folder of plain files: checkpoint (the latest checkpoint), tile/ (the records and"
note "their fingerprints), keten/ (the directory versions and every checkpoint with its"
note "cosignatures)."
plain "the auditor gets the record of the exchanges, not the messages: who sent which" \
    "kind of message to whom, when and under which rule, never what it said."

say "The auditor verifies the export against the checkpoint kept by the police node."
if "$AUDIT" verify --db audit-export --anchor admin/network.pub \
    --checkpoint politie-checkpoint.note >verify.txt 2>&1; then
    sed 's/^/   /' verify.txt
    LATER=
    if grep -q 'only self-consistent' verify.txt; then
        LATER="The records after those the police's checkpoint covers are only consistent with the rest: a later checkpoint a partner keeps would cover them too."
    fi
    plain "nothing in the log was changed, removed, reordered or added afterwards, every" \
        "partner's signature in it is genuine, and it is the same history the partners saw" \
        "and cosigned: the police's checkpoint proves it. $LATER"
else
    fail "verification of the audit log failed"
    sed 's/^/   | /' verify.txt
fi

say "The auditor replays the exchange history (metadata only: who, what kind, when, why):"
"$AUDIT" replay --db audit-export | sed 's/^/   /' | head -40
plain "each line is one record: a number, the time, what happened, which message, who to" \
    "whom, category, purpose and the rule that allowed it. [signed by the sender] or" \
    "[signed by the recipient] means that partner's own signature proves it; [broker's" \
    "claim] means only the broker says so."

say "And counts the exchanges per pair of partners and category, for the annual report:"
"$AUDIT" stats --db audit-export --by pair,category | sed 's/^/   /'
plain "a message is one signal, query or answer as its sender sent it; an exchange is one" \
    "message to one recipient. The first signal went to 2 partners (1 message, 2" \
    "exchanges), the query to 3 (1 message, 3 exchanges), and each of the 3 answers went to" \
    "the municipality only (3 messages, 3 exchanges): 5 messages, 8 exchanges in all." \
    "'receipted' counts the exchanges whose recipient signed that it stored the message."

# With --keep the network runs on until Ctrl-C (SIGINT), SIGTERM or SIGHUP:
# the web addresses and their tokens are printed, then the script waits, in
# a `wait` that a trapped signal ends at once.
if [ "$KEEP" -eq 1 ]; then
    say "The network keeps running (--keep): the web pages are open for you to try."
    note "the broker and the four nodes run on. Open an address in a browser on this machine"
    note "and sign in with the token next to it:"
    note "  the municipality (the clerk):  http://127.0.0.1:${API_PORT[gemeente]}/   ${CLERK:-(no token)}"
    note "  the police (the analyst):      http://127.0.0.1:${API_PORT[politie]}/   ${ANALYST:-(no token)}"
    note "From another machine, through ssh (then open the same address there):"
    note "  ssh -L ${API_PORT[gemeente]}:127.0.0.1:${API_PORT[gemeente]} $(id -un)@$(uname -n)"
    note "  ssh -L ${API_PORT[politie]}:127.0.0.1:${API_PORT[politie]} $(id -un)@$(uname -n)"
    plain "these pages, tokens and keys belong to this demonstration network only. A node's" \
        "page answers on its own machine only; from elsewhere it is reached through an" \
        "encrypted connection (here an ssh tunnel; in an organisation a TLS reverse proxy" \
        "on the node's machine). Stopping the network ends every session."
    echo
    STOPPING=0
    trap 'STOPPING=1' INT TERM HUP
    echo "Press Ctrl-C to stop the network."
    sleep infinity &
    SLEEPER=$!
    while [ "$STOPPING" -eq 0 ] && kill -0 "$SLEEPER" 2>/dev/null; do
        wait "$SLEEPER"
    done
    kill -TERM "$SLEEPER" 2>/dev/null
    wait "$SLEEPER" 2>/dev/null
    SLEEPER=
    trap 'exit 130' INT TERM
    trap 'exit 129' HUP
fi

say "Everything stops."
stop_all
LEFT=()
for pid in "${STARTED[@]}"; do
    kill -0 "$pid" 2>/dev/null && LEFT+=("$pid")
done
if [ ${#LEFT[@]} -eq 0 ]; then
    note "all processes stopped: ${STARTED[*]}"
else
    fail "still running: ${LEFT[*]}"
fi
plain "nothing the demonstration started is left running. To check: ps -p $(IFS=,; echo "${STARTED[*]}")" \
    "(it lists no process); one that was still running would stop with: kill PID"

if [ "$FAILED" -ne 0 ]; then
    echo
    echo "The demonstration did NOT do everything it said (see FAILED above)."
    exit 1
fi
echo
echo "The demonstration did everything it said."

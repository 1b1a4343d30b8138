#!/usr/bin/env bash
# Every refusal of the broker that can be provoked from outside, each with
# its own reason code, audited as a rejected record and answered with an
# error: policy (with the deciding rule), a tampered envelope (bad
# signature), a spoofed sender, a replay (duplicate; the very same envelope
# gets the proof of its original submitted record), clock skew, expiry and
# too long a lifetime, an unknown recipient, an unregistered category,
# malformed bytes, an oversize envelope, a submit before Hello, a Hello
# naming a checkpoint larger than the log (UNKNOWN_CHECKPOINT), receipt
# batches whose root does not match their leaves or signed by another
# node's key (BAD_RECEIPT, nothing receipted), a leaf for a message not
# delivered to that node (skipped, audited, the real recipient still
# receipts it). And a transport key that no directory lists gets nothing
# through.
. "$(dirname "$0")/broker_lib.sh"

setup_broker_network || done_testing

# A later version that only the peer sees: an extra node and an extra
# category, unknown to the broker (which runs on dir.v1).
run "$KEYS" register --dir admin --category extra-cat
expect 0 "register the category extra-cat (for version 2)"
run "$NODE" keygen --home n-extra-node --id extra-node --role police --org "Extra" --no-passphrase
expect 0 "keygen of extra-node"
check "extra-node wrote its enrollment request" test -s n-extra-node/identity.request
run "$KEYS" approve --dir admin n-extra-node/identity.request
expect 0 "approve extra-node (for version 2)"
says "extra-node" "approve names extra-node"
run "$KEYS" policy --dir admin allow --from role:municipality --to role:police --category extra-cat
expect 0 "allow extra-cat from municipalities to police"
publish dir.v2 || done_testing
run "$KEYS" show dir.v2 --json
check "version 2 lists extra-node" grep -q '"extra-node"' "$T/.out"
check "and the category extra-cat" grep -q '"extra-cat"' "$T/.out"

# A 3-second clock window, so that the tests need not wait 5 minutes (the
# certificates are only seconds old: an envelope cannot claim to be older).
start_broker --clock-window-ms 3000 --metrics 127.0.0.1:0 || done_testing
METRICS_PORT=$(metrics_port)

# reason EXPECTED DESCRIPTION: the last peer run got exactly one error with
# that reason and no ack.
reason() {
    jl "len(E('error')) == 1 and E('error')[0]['reason'] == '$1' and not E('ack')" "$2"
}

# ---- policy ---------------------------------------------------------------------

peer gemeente-diemen submit --to woonstad --json signal.json
reason POLICY "a signal the sharing policy denies is refused (POLICY)"
jl 'E("error")[0]["rule"] == 3' "the refusal names the deny rule that decided (rule 3)"
jl 'E("error")[0]["msg_id"] == E("sent")[0]["msg_id"]' "the refusal names the msg_id"
policy_msg=$(jget 'E("sent")[0]["msg_id"]')

peer politie-mn submit --to belastingdienst --json signal.json
reason POLICY "a signal no rule allows is refused by the default deny"
jl 'E("error")[0]["rule"] == 0' "the default deny is rule 0"

peer gemeente-diemen submit --to politie-mn,woonstad --json signal.json
reason POLICY "one refused recipient refuses the whole message"

# Several refused recipients: the decision recorded does not depend on their
# order (woonstad is refused by deny rule 3, the sender itself by the
# default deny; the explicit rule is named either way).
peer gemeente-diemen submit --to woonstad,gemeente-diemen --json signal.json
reason POLICY "two refused recipients: refused (housing first)"
jl 'E("error")[0]["rule"] == 3' "housing first: the explicit deny rule 3 is named, not the default"
peer gemeente-diemen submit --to gemeente-diemen,woonstad --json signal.json
reason POLICY "two refused recipients: refused (default-denied first)"
jl 'E("error")[0]["rule"] == 3' "default-denied first: still deny rule 3, whatever the order"

# ---- signatures and senders ------------------------------------------------------

peer gemeente-diemen seal --to politie-mn --json signal.json --out good.env
expect 0 "seal an envelope without sending it"
jl 'len(E("sealed")) == 1' "the seal prints its msg_id"
check "and writes the envelope" test -s good.env
cp good.env tampered.env
"$PY" -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[-200]^=1; open(p,"wb").write(d)' \
    tampered.env
peer gemeente-diemen submit-raw tampered.env
reason BAD_SIGNATURE "a tampered envelope (one ciphertext bit) is refused (BAD_SIGNATURE)"
cp good.env badsig.env
"$PY" -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[-3]^=1; open(p,"wb").write(d)' \
    badsig.env
peer gemeente-diemen submit-raw badsig.env
reason BAD_SIGNATURE "an envelope with a damaged signature is refused (BAD_SIGNATURE)"

peer politie-mn --sign-home n-gemeente-diemen submit --to belastingdienst --json signal.json
reason SENDER_MISMATCH \
    "node A's connection submitting an envelope signed as node B is refused (SENDER_MISMATCH)"

# ---- replays ------------------------------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json --save-envelope first.env
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "a signal is accepted"
first_msg=$(jget 'E("ack")[0]["msg_id"]')
first_leaf=$(jget 'E("ack")[0]["leaf"]')
peer gemeente-diemen replay first.env
reason DUPLICATE "the same bytes sent again are refused (DUPLICATE)"
jl "E('error')[0]['ack']['valid'] and E('error')[0]['ack']['leaf'] == $first_leaf and E('error')[0]['ack']['msg_id'] == '$first_msg'" \
    "a resubmission of the very envelope carries the proof of its original submitted record (same leaf)"
jl "E('error')[0]['ack']['against_latest'] and E('error')[0]['ack']['record_event'] == 'SUBMITTED'" \
    "that proof is against the checkpoint sent just before the error"
peer belastingdienst replay first.env
reason SENDER_MISMATCH "another node replaying a captured envelope is refused before the msg_id check"
peer politie-mn recv --count 2 --timeout-ms 1500
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$first_msg'" \
    "the recipient gets the message once"

# ---- time ---------------------------------------------------------------------------

peer gemeente-diemen seal --to politie-mn --json signal.json --out old.env
sleep 4
peer gemeente-diemen submit-raw old.env
reason CLOCK_SKEW "created 4 s ago with a 3 s clock window: refused (CLOCK_SKEW)"
peer gemeente-diemen submit --to politie-mn --json signal.json --created-at-offset-ms 600000
reason CLOCK_SKEW "created 10 minutes in the future: refused (CLOCK_SKEW)"
peer gemeente-diemen seal --to politie-mn --json signal.json --expires-in-ms 1000 --out short.env
sleep 1.5
peer gemeente-diemen submit-raw short.env
reason EXPIRED "expired half a second ago: refused (EXPIRED)"
peer gemeente-diemen submit --to politie-mn --json signal.json --expires-in-ms $((8 * 86400000))
reason EXPIRED "a lifetime over the directory's maximum (7 days): refused (EXPIRED)"
says "lifetime" "the refusal says the lifetime is too long"

# ---- directory ------------------------------------------------------------------------

PEER_DIR=dir.v2 peer gemeente-diemen submit --to extra-node --json signal.json
reason UNKNOWN_RECIPIENT "a recipient that is not a current node: refused (UNKNOWN_RECIPIENT)"
PEER_DIR=dir.v2 peer extra-node seal --to politie-mn --json signal.json --out extra-node.env
peer gemeente-diemen submit-raw extra-node.env
reason UNKNOWN_SENDER "an envelope signed by a node the broker does not know: refused (UNKNOWN_SENDER)"
sed 's/"woonfraude"/"extra-cat"/' signal.json >extra.json
PEER_DIR=dir.v2 peer gemeente-diemen submit --to politie-mn --json extra.json
reason UNREGISTERED "a category not registered in the broker's directory: refused (UNREGISTERED)"

# ---- bytes ----------------------------------------------------------------------------

printf 'this is not an envelope' >junk.bin
peer gemeente-diemen submit-raw junk.bin
reason MALFORMED "bytes that are no envelope: refused (MALFORMED)"
head -c 100 good.env >truncated.env
peer gemeente-diemen submit-raw truncated.env
reason MALFORMED "a truncated envelope: refused (MALFORMED)"
head -c $((1024 * 1024 + 100)) /dev/zero >big.bin
peer gemeente-diemen submit-raw big.bin
reason TOO_LARGE "an envelope over 1 MiB: refused (TOO_LARGE)"

# ---- Hello ----------------------------------------------------------------------------

peer gemeente-diemen --no-hello --timeout-ms 2000 submit --to politie-mn --json signal.json
reason MALFORMED "a submit before Hello is refused (MALFORMED)"
jl "E('error')[0]['detail'] == 'send Hello first' and not E('checkpoint')" \
    "the refusal says to send Hello first, and the connection gets no checkpoint"
nohello_msg=$(jget 'E("sent")[0]["msg_id"]')

peer gemeente-diemen --hello-size 1000000 connect-only --listen-ms 1500
jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'UNKNOWN_CHECKPOINT' and E('error')[0]['detail'].startswith('your checkpoint has 1000000 leaves; this log has ')" \
    "a Hello naming more leaves than the log has is refused (UNKNOWN_CHECKPOINT)"
jl 'not E("checkpoint")' "and that connection gets no checkpoint"
audit
size_now=$(jget 'len(L)')
peer gemeente-diemen --hello-size "$size_now" connect-only --listen-ms 1500
jl "not E('error') and len(E('checkpoint')) >= 1 and E('checkpoint')[0]['old_size'] == $size_now and E('checkpoint')[0]['signature_valid'] and E('checkpoint')[0]['proof_hashes'] > 0" \
    "a Hello naming the log's size gets the next checkpoint with a consistency proof from that size"

# ---- receipt batches --------------------------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json --save-envelope rc.env
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "a signal for politie-mn is accepted"
rc_msg=$(jget 'E("sent")[0]["msg_id"]')
peer politie-mn receipt-batch --envelope rc.env --tamper leaf --listen-ms 1500
reason BAD_RECEIPT "a receipt batch whose root does not match its leaves is refused (BAD_RECEIPT)"
peer politie-mn --sign-home n-belastingdienst receipt-batch --envelope rc.env --listen-ms 1500
reason BAD_RECEIPT "a receipt batch signed by another node's key is refused (BAD_RECEIPT)"
peer belastingdienst receipt-batch --envelope rc.env --listen-ms 1500
jl 'E("receipt_batch")[0]["sent"] and not E("error")' \
    "a batch whose leaf names a message not delivered to that node verifies (no error)"
audit
jl "not any(x['event'] in ('RECEIPTED', 'REFUSED_BY_RECIPIENT') and x['msg_id'] == '$rc_msg' for x in L)" \
    "none of the three batches receipted the message"
jl "len([x for x in L if x['event'] == 'REJECTED' and x['reason'] == 'BAD_RECEIPT' and x['sender'] == 'politie-mn']) == 2" \
    "the two refused batches are audited as rejected (BAD_RECEIPT, naming the node)"
jl "len([x for x in L if x['event'] == 'REJECTED' and x['reason'] == 'BAD_RECEIPT' and x['sender'] == 'belastingdienst']) == 1" \
    "the batch with a leaf that matches nothing is audited once (BAD_RECEIPT, naming the node)"
run curl -sf "http://127.0.0.1:$METRICS_PORT/metrics"
stdout_says "keten_receipt_leaves_unmatched_total 1" "the skipped leaf is counted"
stdout_says 'keten_rejects_total{reason="bad_receipt"} 3' "the three refusals are counted"
peer politie-mn recv --count 1
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$rc_msg' and E('deliver')[0]['valid'] and not E('error')" \
    "the real recipient still gets the message and receipts it"
check "its receipt is recorded" wait_for 10 sh -c \
    "'$PEER' audit --db broker/store | grep -q '\"event\":\"RECEIPTED\",\"msg_id\":\"$rc_msg\"'"

# ---- keys nobody listed ------------------------------------------------------------------

peer gemeente-diemen --transport-key-only connect-only --listen-ms 1500
jl 'E("summary")[0]["frames"] == 0' "a transport key that no directory lists gets no frame"
peer gemeente-diemen --transport-key-only --timeout-ms 1500 submit --to politie-mn \
    --json signal.json
jl 'not E("ack") and not E("error") and E("timeout")' \
    "its submit gets no answer at all (the handshake is refused)"
tk_msg=$(jget 'E("sent")[0]["msg_id"] if E("sent") else ""')
peer politie-mn recv --count 1 --timeout-ms 1000
jl 'len(E("deliver")) == 0' "and nothing of it is delivered"

# ---- the audit log ---------------------------------------------------------------------

audit
expect 0 "read the audit log"
jl 'len(L) > 0 and all(x["seq"] == i for i, x in enumerate(L))' "it holds records, seq 0 onwards"
for r in POLICY BAD_SIGNATURE SENDER_MISMATCH DUPLICATE CLOCK_SKEW EXPIRED UNKNOWN_RECIPIENT \
    UNREGISTERED UNKNOWN_SENDER MALFORMED TOO_LARGE UNKNOWN_CHECKPOINT BAD_RECEIPT; do
    jl "any(x['event'] == 'REJECTED' and x['reason'] == '$r' for x in L)" \
        "the refusal $r is audited"
done
jl "any(x['event'] == 'REJECTED' and x['reason'] == 'POLICY' and x['rule'] == 3 and x['msg_id'] == '$policy_msg' and x['sender'] == 'gemeente-diemen' for x in L)" \
    "a policy refusal records msg_id, sender and the deciding rule"
jl "all(x['header_bytes'] == 0 for x in L if x['event'] == 'REJECTED')" \
    "refusal records hold nothing the sender typed (no header)"
jl "not any(x['event'] == 'SUBMITTED' and x['msg_id'] == '$nohello_msg' for x in L)" \
    "the submit sent before Hello was not stored"
jl "len([x for x in L if x['event'] == 'RECEIPTED' and x['msg_id'] == '$rc_msg' and x['node'] == 'politie-mn']) == 1" \
    "the message is receipted once, by its recipient"
jl "len([x for x in L if x['event'] == 'SUBMITTED' and x['msg_id'] == '$first_msg']) == 1" \
    "the replayed message is recorded as submitted once"
jl 'any(x["event"] == "AUTH_FAILED" and len(x["node"]) == 64 for x in L)' \
    "the refused transport key is audited (auth-failed, with the key)"
if [ -n "$tk_msg" ]; then
    jl "not any(x.get('msg_id') == '$tk_msg' for x in L)" \
        "nothing of the unlisted key's submit is in the log: not submitted, not delivered"
else
    not_ok "the unlisted key's submit printed no msg_id to look for in the log"
fi
check "the log holds no content" lacks grep -qF 'Hoofdstraat' "$BLOG"

stop_broker
check "the broker stops with exit 0" test "$BRC" -eq 0
done_testing

#!/usr/bin/env bash
# A hostile partner: a real node (enrolled keys, CurveZMQ) that sends the
# broker frames in an order or a shape no correct node sends.
#   - Frames before Hello: a submit is refused MALFORMED "send Hello
#     first" and not audited (junk after Hello is); a receipt batch (for a message delivered on an earlier
#     connection) and a cosignature are taken, as a node's frames queued
#     while it was cut off reach its new connection before its Hello.
#     Credit, a NoticeAck and a directory request before Hello are taken.
#   - Hello after Hello on one connection, each with credit: the
#     deliveries in flight are sent again once, not once per Hello (twenty
#     Hellos used to get the whole queue twenty times more, past the
#     connection's byte budget); a new connection still gets them.
#   - Proof requests for records of other partners' traffic: a partner
#     asking for the inclusion proof of another partner's submitted,
#     receipted or connection record is refused (SENDER_MISMATCH) and gets
#     nothing of the record (it used to get the whole record: msg_id,
#     sender, recipients, category, purpose, header); the parties of a
#     record, and anyone for a directory-installed record, get its proof.
#   - Receipt batches: no leaf, 1,025 leaves, one leaf more than the head
#     counts (BAD_RECEIPT, nothing receipted); 1,024 leaves repeating one
#     msg_id (one receipted record, 1,023 leaves counted as repeated); the
#     same batch again (repeated, no record); a leaf for a message queued
#     for the node but never delivered to it (skipped, audited BAD_RECEIPT,
#     no receipted record; delivered later, it is receipted as usual).
. "$(dirname "$0")/broker_lib.sh"

setup_broker_network || done_testing
start_broker --metrics 127.0.0.1:0 || done_testing
METRICS_PORT=$(metrics_port)

# refused RID DESCRIPTION: the last peer got exactly one error, MALFORMED
# "send Hello first", answering request RID.
refused() {
    jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'MALFORMED' and E('error')[0]['detail'] == 'send Hello first' and E('error')[0]['request_id'] == $1" \
        "$2"
}

# audit_has EXPR: EXPR holds over the audit records L (for wait_for).
audit_has() {
    "$PEER" audit --db broker/store >"$T/.audit" 2>/dev/null || return 2
    "$PY" - "$T/.audit" "$1" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}

# metric NAME: the broker's value of metric NAME.
metric() {
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | sed -n "s/^$1 \\([0-9]*\\)\$/\\1/p"
}

# ---- a submit, a receipt batch and a cosignature before Hello -----------------------

peer gemeente-diemen --no-hello submit --to politie-mn --json signal.json --listen-ms 1500
refused 1 "a submit before Hello is refused (MALFORMED, \"send Hello first\")"
jl 'not E("ack")' "and not acknowledged"
# Not a refusal of a message: a correct node's submit queued while its link
# was down reaches the new connection ahead of its Hello, and is sent again.
audit
jl "not any(x['event'] == 'REJECTED' and x['sender'] == 'gemeente-diemen' for x in L)" \
    "and not recorded: no rejection of gemeente-diemen is audited for it"
check "the broker counts it as refused (MALFORMED)" test "$(metric \
    'keten_rejects_total{reason="malformed"}')" = 1
# Twin: bytes that are no envelope, after Hello, are a refusal and audited.
head -c 200 /dev/urandom >junk.bin
peer gemeente-diemen submit-raw junk.bin
jl 'len(E("error")) == 1 and E("error")[0]["reason"] == "MALFORMED" and not E("ack")' \
    "twin: junk submitted after Hello is refused (MALFORMED)"
audit
jl "len([x for x in L if x['event'] == 'REJECTED' and x['reason'] == 'MALFORMED' and x['sender'] == 'gemeente-diemen']) == 1" \
    "and audited as a rejection of gemeente-diemen"

peer gemeente-diemen submit --to politie-mn --json signal.json --save-envelope a.env
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "a signal for politie-mn is accepted"
a_msg=$(jget 'E("sent")[0]["msg_id"]')
a_leaf=$(jget 'E("ack")[0]["leaf"]')
peer politie-mn recv --count 1 --no-receipt
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$a_msg' and E('deliver')[0]['valid']" \
    "politie-mn gets it and sends no receipt"
# Its receipt comes on a new connection ahead of the Hello, as a node's
# receipts queued while it was cut off do.
peer politie-mn --no-hello receipt-batch --envelope a.env --listen-ms 1500
jl 'E("receipt_batch")[0]["sent"] and not E("error")' \
    "a receipt batch before Hello, for a message delivered on an earlier connection, gets no error"
check "and it is receipted" wait_for 10 audit_has \
    "any(r['event'] == 'RECEIPTED' and r['msg_id'] == '$a_msg' and r['node'] == 'politie-mn' for r in L)"
audit
jl "not any(x['event'] == 'REJECTED' and x['sender'] == 'politie-mn' for x in L)" \
    "no rejection of politie-mn is audited for it"

stored_checkpoint() {
    "$PEER" checkpoints --db broker/store 2>/dev/null | grep -q checkpoint_stored
}
check "the broker stored a witness checkpoint" wait_for 10 stored_checkpoint
peer belastingdienst --no-hello cosign --db broker/store --listen-ms 5000
jl 'E("cosignature")[0]["sent"] and E("directory_push") and not E("error")' \
    "belastingdienst cosigns the newest stored checkpoint before Hello: no error"
early_size=$(jget 'E("cosignature")[0]["size"]')
run "$PEER" checkpoints --db broker/store
jl "[c for c in E('checkpoint_stored') if c['size'] == $early_size and 'belastingdienst' in c['signers']]" \
    "and the cosignature is attached to the stored checkpoint"

# Frames that record nothing in the log are taken before Hello.
peer gemeente-diemen --no-hello notice-ack --leaf 0
jl 'E("notice_ack")[0]["sent"] and len(E("directory_push")) == 1 and not E("error")' \
    "before Hello, a NoticeAck and a directory request are taken (no error; the request answered)"

# ---- proofs of records of other partners' traffic -------------------------------

audit
a_rleaf=$(jget "[i for i, x in enumerate(L) if x['event'] == 'RECEIPTED' and x['msg_id'] == '$a_msg'][0]")
g_conn=$(jget "[i for i, x in enumerate(L) if x['event'] == 'NODE_CONNECTED' and x['node'] == 'gemeente-diemen'][0]")

# not_served LEAF WHAT: belastingdienst, no party to it, asks for LEAF's proof.
not_served() {
    peer belastingdienst proof --leaf "$1"
    jl 'len(E("error")) == 1 and E("error")[0]["reason"] == "SENDER_MISMATCH" and not E("proof")' \
        "belastingdienst asks for the proof of $2: refused (SENDER_MISMATCH)"
    jl "'$a_msg' not in open('$T/.all').read()" "$2: nothing of the record is in the answer"
}
not_served "$a_leaf" "gemeente-diemen's message to politie-mn (submitted record)"
says "not a record of belastingdienst's own traffic" "the refusal says why"
not_served "$a_rleaf" "politie-mn's receipt of it (receipted record)"
peer belastingdienst proof --leaf "$g_conn"
jl 'len(E("error")) == 1 and E("error")[0]["reason"] == "SENDER_MISMATCH" and not E("proof")' \
    "belastingdienst asks for the proof of gemeente-diemen's connection record: refused (SENDER_MISMATCH)"

peer politie-mn proof --leaf "$a_leaf"
jl "len(E('proof')) == 1 and E('proof')[0]['inclusion_valid'] and E('proof')[0]['leaf_msg_id'] == '$a_msg' and not E('error')" \
    "twin: politie-mn, its recipient, gets the proof of the submitted record"
peer gemeente-diemen proof --leaf "$a_rleaf"
jl "len(E('proof')) == 1 and E('proof')[0]['inclusion_valid'] and E('proof')[0]['leaf_event'] == 'RECEIPTED' and E('proof')[0]['leaf_msg_id'] == '$a_msg'" \
    "twin: gemeente-diemen, its sender, gets the proof of the receipted record"
peer gemeente-diemen proof --leaf "$g_conn"
jl "len(E('proof')) == 1 and E('proof')[0]['inclusion_valid'] and E('proof')[0]['leaf_event'] == 'NODE_CONNECTED'" \
    "twin: gemeente-diemen gets the proof of its own connection record"
peer belastingdienst proof --leaf 0
jl "len(E('proof')) == 1 and E('proof')[0]['inclusion_valid'] and E('proof')[0]['leaf_event'] == 'DIRECTORY_INSTALLED'" \
    "twin: belastingdienst gets the proof of the directory-installed record (the directory is every partner's)"

# ---- credit before Hello ----------------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "another signal for politie-mn is accepted"
b_msg=$(jget 'E("sent")[0]["msg_id"]')
peer politie-mn --credit-first 5 recv --count 1
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$b_msg' and E('deliver')[0]['valid'] and not E('error')" \
    "credit granted before Hello (none after) is counted: the message is delivered after the Hello"

# ---- Hello after Hello ------------------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json --count 3
jl 'len(E("ack")) == 3 and all(a["valid"] for a in E("ack"))' "three more signals are accepted"
peer politie-mn recv --count 3 --credit 10 --no-receipt --rehello 20
jl 'E("rehello")[0]["deliveries_before"] == 3 and len(E("directory_push")) == 20' \
    "politie-mn gets the three, then says Hello 20 times more with credit, each in a batch of its own (20 requests answered)"
jl 'E("summary")[0]["deliveries"] == 6 and not E("error")' \
    "the first Hello has the three sent again once, the 19 others nothing (6 deliveries in all)"
peer politie-mn recv --count 3
jl 'len(E("deliver")) == 3 and all(d["valid"] for d in E("deliver")) and E("summary")[0]["receipt_batches"] >= 1' \
    "a new connection gets the three again, and receipts them"

# ---- receipt batches --------------------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json --save-envelope c.env
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "a signal for the batch tests is accepted"
c_msg=$(jget 'E("sent")[0]["msg_id"]')
peer politie-mn recv --count 1 --no-receipt
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$c_msg'" "and delivered, not receipted"

# bad_batch TAMPER DETAIL DESCRIPTION
bad_batch() {
    peer politie-mn receipt-batch --envelope c.env --tamper "$1" --listen-ms 3000
    jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'BAD_RECEIPT' and E('error')[0]['detail'].startswith('$2')" \
        "$3: refused (BAD_RECEIPT, \"$2...\")"
}
bad_batch empty "a receipt batch of 0 leaves; 1 to 1024 allowed" "a batch with no leaf"
bad_batch many "a receipt batch of 1025 leaves; 1 to 1024 allowed" "a batch of 1,025 leaves"
bad_batch count "receipt batch does not verify: " "one leaf more than the head counts"
says "counts 1 leaves; 2 came" "the refusal says what the head counts and what came"
audit
jl "not any(x['event'] in ('RECEIPTED', 'REFUSED_BY_RECIPIENT') and x['msg_id'] == '$c_msg' for x in L)" \
    "none of the three receipted the message"

rep_before=$(metric keten_receipt_leaves_repeated_total)
peer politie-mn receipt-batch --envelope c.env --repeat 1024 --listen-ms 1500
jl 'E("receipt_batch")[0]["leaves"] == 1024 and not E("error")' \
    "a batch of 1,024 leaves, all one msg_id, is taken (no error)"
check "it is receipted" wait_for 10 audit_has \
    "any(r['event'] == 'RECEIPTED' and r['msg_id'] == '$c_msg' and r['node'] == 'politie-mn' for r in L)"
check "the 1,023 leaves after the first are counted as repeated" \
    test "$(metric keten_receipt_leaves_repeated_total)" -eq $((rep_before + 1023))
peer politie-mn receipt-batch --envelope c.env --listen-ms 1500
jl 'not E("error")' "the same answer again gets no error"
check "and is counted as repeated" \
    test "$(metric keten_receipt_leaves_repeated_total)" -eq $((rep_before + 1024))
audit
jl "len([x for x in L if x['event'] == 'RECEIPTED' and x['msg_id'] == '$c_msg']) == 1" \
    "the message is receipted once"

# A leaf for a message queued for the node and never delivered to it.
peer gemeente-diemen submit --to politie-mn --json signal.json --save-envelope d.env
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "a signal that politie-mn is not sent yet is accepted"
d_msg=$(jget 'E("sent")[0]["msg_id"]')
audit
bad_before=$(jget "len([x for x in L if x['event'] == 'REJECTED' and x['reason'] == 'BAD_RECEIPT' and x['sender'] == 'politie-mn'])")
un_before=$(metric keten_receipt_leaves_unmatched_total)
# With a Hello and no credit: nothing is delivered before the batch is read
# (its leaf gives one credit back, after which the message may be).
peer politie-mn receipt-batch --envelope d.env --listen-ms 1500
jl 'E("receipt_batch")[0]["sent"] and not E("error")' \
    "politie-mn sends a signed leaf for it before any delivery"
check "the leaf is skipped and the batch audited (rejected BAD_RECEIPT, naming the node)" \
    wait_for 10 audit_has "len([x for x in L if x['event'] == 'REJECTED' and x['reason'] == 'BAD_RECEIPT' and x['sender'] == 'politie-mn']) > $bad_before"
audit
jl "not any(x['event'] in ('RECEIPTED', 'REFUSED_BY_RECIPIENT') and x['msg_id'] == '$d_msg' for x in L)" \
    "the message is not receipted"
check "the skipped leaf is counted as unmatched" \
    test "$(metric keten_receipt_leaves_unmatched_total)" -eq $((un_before + 1))
peer politie-mn recv --count 1
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$d_msg' and E('deliver')[0]['valid']" \
    "it is delivered to politie-mn later"
check "and its receipt then is recorded" wait_for 10 audit_has \
    "any(r['event'] == 'RECEIPTED' and r['msg_id'] == '$d_msg' and r['node'] == 'politie-mn' for r in L)"
audit
jl "[i for i, x in enumerate(L) if x['event'] == 'DELIVERED' and x['msg_id'] == '$d_msg'] < [i for i, x in enumerate(L) if x['event'] == 'RECEIPTED' and x['msg_id'] == '$d_msg']" \
    "its delivered record comes before its receipted record"

# ---- the end ------------------------------------------------------------------------

jl "all(x['header_bytes'] == 0 for x in L if x['event'] == 'REJECTED')" \
    "refusal records hold nothing the peer sent"
stop_broker
check "the broker stops with exit 0" test "$BRC" -eq 0
done_testing

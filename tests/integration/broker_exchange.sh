#!/usr/bin/env bash
# The exchange through the real keten-broker on ipc://: every connection
# says Hello first and gets checkpoints signed by the broker's log key, each
# proven consistent with the one before; a submit accepted with an ack that
# is the inclusion proof of its submitted record against the checkpoint
# sent just before it, delivered with the same proof to an online recipient
# that opens it and answers in a signed receipt batch, the sender told by a
# notice proving the receipted record (which holds the recipient's receipt
# proof); a recipient that refuses a message (refused-by-recipient: recorded
# with its reason, never delivered again, the sender told); an offline recipient's backlog delivered oldest first; receipts
# queued for an offline sender; expiry; checkpoints cosigned until
# witnessed; inclusion and consistency proofs; the directory chain; the
# audit records of all of it; the metrics endpoint; SIGTERM.
. "$(dirname "$0")/broker_lib.sh"
need_tool curl # the metrics endpoint

setup_broker_network || done_testing
require "the broker runs" start_broker --metrics 127.0.0.1:0 --checkpoint-ms 200
METRICS_PORT=$(metrics_port)

# ---- online recipient: deliver, receipt, forwarded receipt --------------------

timeout 30 "$PEER" --home n-politie-mn --anchor admin/network.pub --directory dir.v1 \
    --broker "$ENDPOINT" --timeout-ms 15000 recv --count 1 >recv-online.json 2>&1 &
RPID=$!
wait_for 10 grep -q 'msg="node connected" node=politie-mn' "$BLOG" \
    || not_ok "the recipient connects"

peer gemeente-diemen --timeout-ms 15000 submit --to politie-mn --json signal.json \
    --save-envelope env1.bin --wait-receipts 1
expect 0 "a partner submits a signal to an online recipient"
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"] and E("ack")[0]["record_event"] == "SUBMITTED"' \
    "the submit is acknowledged with the inclusion proof of its submitted record"
jl 'E("ack")[0]["against_latest"] and E("ack")[0]["matches_envelope"]' \
    "the ack's proof verifies against the checkpoint sent just before it, and its record is the envelope's"
jl 'len(E("checkpoint")) >= 1 and all(c["valid"] and c["signature_valid"] for c in E("checkpoint"))' \
    "every checkpoint the sender gets verifies under the broker's log key and is consistent with the one before"
jl 'E("ack")[0]["msg_id"] == E("sent")[0]["msg_id"]' "the ack names the submitted msg_id"
jl "E('ack')[0]['envelope_hash'] == '$(sha256sum env1.bin | cut -d' ' -f1)'" \
    "the ack names the SHA-256 of the envelope as sent"
msg1=$(jget 'E("sent")[0]["msg_id"]')
leaf1=$(jget 'E("ack")[0]["leaf"]')
jl "len(E('receipt')) == 1 and E('receipt')[0]['valid'] and E('receipt')[0]['msg_id'] == '$msg1'" \
    "the sender gets a receipt notice whose record's proof and receipt proof verify"
jl 'E("receipt")[0]["record_event"] == "RECEIPTED" and E("receipt")[0]["outcome"] == "STORED" and E("receipt")[0]["confirmed"]' \
    "the record is receipted, the recipient's leaf says stored, and the sender confirms the notice"
jl 'E("receipt")[0]["recipient"] == "politie-mn" and E("receipt")[0]["leaf"] > E("ack")[0]["leaf"]' \
    "the forwarded receipt names the recipient and its own (later) audit leaf"

wait "$RPID"
cp recv-online.json "$T/.out"
jl "len(E('deliver')) == 1 and E('deliver')[0]['opened'] and E('deliver')[0]['msg_id'] == '$msg1'" \
    "the online recipient gets the message and opens it (signature, commitment, decryption)"
jl "E('deliver')[0]['leaf'] == $leaf1 and E('deliver')[0]['from'] == 'gemeente-diemen'" \
    "the delivery carries the leaf index of its submitted record and the sender"
jl 'E("deliver")[0]["summary"] == "Adres staat op naam van 9 personen"' \
    "the content is identical after decryption"
jl 'E("deliver")[0]["valid"] and E("deliver")[0]["record_matches"]' \
    "the delivery's proof verifies against the checkpoint before it, and its record is the envelope's"
jl 'E("deliver")[0]["receipted"] and len(E("receipt_batch")) == 1' \
    "the recipient answers in a signed receipt batch"
jl 'len(E("checkpoint")) >= 2 and all(c["valid"] for c in E("checkpoint")) and any(c["old_size"] > 0 and c["proof_hashes"] > 0 for c in E("checkpoint"))' \
    "successive checkpoints come with consistency proofs that verify"

# ---- offline recipient: backlog oldest first; receipts queued for the sender -

peer gemeente-diemen submit --to belastingdienst --json signal.json --count 3
expect 0 "three signals to an offline recipient"
jl 'len(E("ack")) == 3 and all(a["valid"] for a in E("ack"))' "all three are acknowledged"
order=$(jget '",".join(s["msg_id"] for s in E("sent"))')
leaves=$(jget '[a["leaf"] for a in E("ack")]')

peer belastingdienst recv --count 3
expect 0 "the offline recipient connects and asks for its backlog"
jl 'len(E("deliver")) == 3 and all(d["opened"] for d in E("deliver"))' \
    "it gets all three and opens them"
jl "','.join(d['msg_id'] for d in E('deliver')) == '$order'" "oldest first"
jl "[d['leaf'] for d in E('deliver')] == $leaves" "each with the leaf of its submitted record"

peer gemeente-diemen connect-only --listen-ms 1500
expect 0 "the sender connects again"
jl "len(E('receipt')) == 3 and all(r['valid'] for r in E('receipt'))" \
    "it gets the three receipts that waited while it was away, all valid"
jl "sorted(r['msg_id'] for r in E('receipt')) == sorted('$order'.split(','))" \
    "they are the receipts of the three messages"

peer belastingdienst recv --count 1 --timeout-ms 1000
jl 'len(E("deliver")) == 0' "receipted messages are not delivered again"

# ---- a recipient refuses: refused-by-recipient ---------------------------------

peer gemeente-diemen submit --to belastingdienst --json signal.json
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "a signal the recipient will refuse is accepted"
msg_ref=$(jget 'E("sent")[0]["msg_id"]')
peer belastingdienst recv --count 1 --refuse policy
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$msg_ref' and E('deliver')[0]['outcome'] == 'REFUSED'" \
    "the recipient refuses it in its receipt batch (reason policy)"
jl 'not E("error")' "the broker takes the refusal without an error"
peer belastingdienst recv --count 1 --timeout-ms 1000
jl 'len(E("deliver")) == 0' "a refused message is not delivered again"
peer gemeente-diemen connect-only --listen-ms 1500
jl "any(r['msg_id'] == '$msg_ref' and r['valid'] and r['record_event'] == 'REFUSED_BY_RECIPIENT' and r['outcome'] == 'REFUSED' and r['reason'] == 'POLICY' and r['recipient'] == 'belastingdienst' for r in E('receipt'))" \
    "the sender gets a notice proving the refused-by-recipient record, with the recipient's signed leaf and reason"

# ---- expiry -------------------------------------------------------------------

sed 's/"woonfraude"/"adrescheck"/' signal.json >check.json
peer gemeente-diemen submit --to woonstad --json check.json --expires-in-ms 1000
jl 'len(E("ack")) == 1' "a short-lived query to an offline recipient is accepted"
msg_exp=$(jget 'E("sent")[0]["msg_id"]')
sleep 2
peer gemeente-diemen connect-only --listen-ms 1500
jl "any(x['msg_id'] == '$msg_exp' and x['recipients'] == ['woonstad'] for x in E('expired'))" \
    "after expires_at the sender is told which recipients never receipted it"
peer woonstad recv --count 1 --timeout-ms 1000
jl 'len(E("deliver")) == 0' "the expired message is never delivered"

# ---- checkpoints, cosignatures, proofs ----------------------------------------

WPIDS=()
for n in politie-mn belastingdienst woonstad; do
    timeout 30 "$PEER" --home "n-$n" --anchor admin/network.pub --directory dir.v1 \
        --broker "$ENDPOINT" --cosign connect-only --listen-ms 4000 >"cosign-$n.json" 2>&1 &
    WPIDS+=($!)
done
wait "${WPIDS[@]}"
cat cosign-*.json >"$T/.out"
jl 'any(c["valid"] and c.get("cosigned") for c in E("checkpoint"))' \
    "nodes receive checkpoints that verify under the broker's log key and cosign them"
jl 'any(c.get("witnessed") and c["cosignatures"] >= 3 for c in E("checkpoint"))' \
    "a checkpoint cosigned by a quorum (3 of 4 partners) is sent again, witnessed"
jl 'all(c["directory_version"] == 1 for c in E("checkpoint"))' \
    "checkpoints name the installed directory version"

peer politie-mn proof --leaf "$leaf1"
expect 0 "a node asks for an inclusion proof of a submitted record"
jl 'len(E("proof")) == 1 and E("proof")[0]["inclusion_valid"]' \
    "the inclusion proof verifies against a signed checkpoint"
jl "E('proof')[0]['leaf_event'] == 'SUBMITTED' and E('proof')[0]['leaf_msg_id'] == '$msg1'" \
    "the leaf bytes are the submitted record of that message"

# The prover asks for the first leaf appended after its first checkpoint
# that is a record of its own traffic (the broker serves a node the proofs
# of its own records only: the sender's connection record before it is
# refused), so that the proof must come with a later checkpoint and a
# consistency proof from the first.
timeout 30 "$PEER" --home n-woonstad --anchor admin/network.pub --directory dir.v1 \
    --broker "$ENDPOINT" --timeout-ms 10000 proof --leaf next >proof-bg.json 2>&1 &
PPID2=$!
# The prover holds its first checkpoint before the next record is appended
# (it gets one at once, in answer to its Hello).
wait_for 30 grep -q '"event":"checkpoint"' proof-bg.json
check "the prover got its first checkpoint before the next submit" test $? -eq 0
peer gemeente-diemen submit --to woonstad --json check.json
wait "$PPID2"
cp proof-bg.json "$T/.out"
jl 'len(E("proof")) == 1 and E("proof")[0]["inclusion_valid"]' \
    "a leaf appended later is proven in the next checkpoint"
jl 'E("proof")[0]["leaf_event"] == "SUBMITTED"' "it is the record of the message to the prover"
jl 'E("proof")[0].get("consistency_valid") is True and E("proof")[0]["old_size"] > 0' \
    "the new checkpoint is proven consistent with the one the node saw first"

PEER_DIR=dir.v1 peer politie-mn dir-request --after 0
jl 'E("directory_push") and E("directory_push")[0]["versions"] == [1]' \
    "the directory chain is served on request"

# ---- audit records ------------------------------------------------------------

audit
expect 0 "the audit log can be read"
jl 'all(r["seq"] == i for i, r in enumerate(L))' "every record's seq is its leaf index"
jl 'L[0]["event"] == "DIRECTORY_INSTALLED" and L[0]["directory_version"] == 1' \
    "leaf 0 records the installed directory"
jl "any(r['event'] == 'SUBMITTED' and r['msg_id'] == '$msg1' and r['seq'] == $leaf1 and r['header_bytes'] > 0 and r['size_bucket'] == 1024 and r['recipients'] == ['politie-mn'] and r['rule'] == 1 for r in L)" \
    "the submitted record holds the header, the size bucket, the recipients and the allowing rule"
jl "len([r for r in L if r['event'] == 'DELIVERED' and r['msg_id'] == '$msg1' and r['node'] == 'politie-mn']) == 1" \
    "the delivery is recorded once for the recipient"
jl "any(r['event'] == 'RECEIPTED' and r['msg_id'] == '$msg1' and r['receipt_bytes'] > 0 and r['node'] == 'politie-mn' and r['recipients'] == ['politie-mn'] for r in L)" \
    "the receipt is recorded with the recipient's receipt proof"
jl "len([r for r in L if r['event'] == 'REFUSED_BY_RECIPIENT' and r['msg_id'] == '$msg_ref' and r['reason'] == 'POLICY' and r['receipt_bytes'] > 0 and r['node'] == 'belastingdienst']) == 1" \
    "the refusal is recorded once, as refused-by-recipient with its reason and receipt proof"
jl "any(r['event'] == 'EXPIRED' and r['msg_id'] == '$msg_exp' and r['recipients'] == ['woonstad'] for r in L)" \
    "the expiry is recorded with the recipients that never receipted"
# The recv sessions above waited a second for a delivery that must not come;
# the log read now covers every session (a delivery is only made to a
# connected node, and each session is over).
jl "all(len([r for r in L if r['event'] == 'DELIVERED' and r['msg_id'] == m]) == 1 for m in '$order'.split(','))" \
    "the backlog's three messages were each delivered once (receipted, not delivered again)"
jl "len([r for r in L if r['event'] == 'DELIVERED' and r['msg_id'] == '$msg_ref']) == 1" \
    "the refused message was delivered once (not again after its refusal)"
jl "not any(r['event'] == 'DELIVERED' and r['msg_id'] == '$msg_exp' for r in L)" \
    "the expired message was never delivered"
jl 'any(r["event"] == "NODE_CONNECTED" and r["node"] == "gemeente-diemen" for r in L)' \
    "connections are recorded"
jl 'any(r["event"] == "NODE_DISCONNECTED" and r["node"] == "gemeente-diemen" for r in L)' \
    "disconnections are recorded"

# ---- metrics and stopping ------------------------------------------------------

run curl -sf "http://127.0.0.1:$METRICS_PORT/metrics"
expect 0 "the metrics endpoint answers"
for name in keten_submits_total 'keten_rejects_total{reason="policy"}' keten_deliveries_total \
    keten_receipts_total keten_expired_total keten_audit_tree_size keten_checkpoint_tree_size \
    keten_batch_size_bucket keten_commit_seconds_bucket keten_connected_nodes \
    keten_directory_version keten_store_used_bytes keten_notices_pending \
    keten_refused_by_recipient_total keten_receipt_batches_total \
    keten_receipt_leaves_unmatched_total keten_commit_checkpoints_total; do
    stdout_says "$name" "metrics: $name"
done
stdout_says "keten_submits_total 7" "metrics count the seven accepted submits"
stdout_says "keten_refused_by_recipient_total 1" "metrics count the one refused-by-recipient record"
stdout_says "keten_insecure_key 1" "a key file without a passphrase shows as keten_insecure_key 1"
stdout_says "keten_store_full 0" "keten_store_full is 0"
grep -q 'msg="the broker.s key file has no passphrase' "$BLOG"
check "the broker warns at start about a key file without a passphrase" test $? -eq 0
run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/other"
stdout_says 404 "other paths are not found"
check "the log holds no content" lacks grep -qF 'Hoofdstraat' "$BLOG"

stop_broker
check "SIGTERM: the broker finishes its batch and exits 0 within 5 s" test "$BRC" -eq 0
done_testing

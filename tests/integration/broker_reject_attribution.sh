#!/usr/bin/env bash
# A node cannot attach "rejected" records to another party's message. Y
# (gemeente-diemen) sends a message to X (politie-mn), so X knows its msg_id;
# X then submits Y's envelope with one ciphertext bit flipped (BAD_SIGNATURE)
# and Y's envelope as it is (SENDER_MISMATCH). Both refusals are audited, as
# X's, without a msg_id; `keten-audit replay --msg` and `prove` for Y's
# message show Y's records only. Twins: Y's own resubmission of the same
# envelope (DUPLICATE) is shown under Y's message, and X's own message
# refused by the policy is audited with its msg_id and shows under it as a
# message never accepted (docs/audit.md).
. "$(dirname "$0")/audit_lib.sh"

setup_broker_network || done_testing
start_broker || done_testing

peer gemeente-diemen submit --to politie-mn --json signal.json --save-envelope y.env
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "Y's message is accepted"
Y_MSG=$(jget 'E("ack")[0]["msg_id"]')
peer politie-mn recv --count 1 --timeout-ms 3000
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$Y_MSG'" \
    "X receives it: X knows Y's msg_id"

cp y.env forged.env
"$PY" -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[-200]^=1; open(p,"wb").write(d)' \
    forged.env
peer politie-mn submit-raw forged.env
jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'BAD_SIGNATURE' and not E('ack')" \
    "X's forged envelope carrying Y's msg_id is refused (BAD_SIGNATURE)"
jl "E('error')[0]['msg_id'] == '$Y_MSG'" \
    "the error to X names the msg_id X sent (X's own answer, not the log)"
peer politie-mn replay y.env
jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'SENDER_MISMATCH'" \
    "X relaying Y's envelope is refused (SENDER_MISMATCH)"
peer gemeente-diemen replay y.env
jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'DUPLICATE'" \
    "twin: Y sending its own envelope again is refused (DUPLICATE)"
peer politie-mn submit --to belastingdienst --json signal.json
jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'POLICY'" \
    "twin: X's own message to belastingdienst is refused by the policy"
X_MSG=$(jget 'E("sent")[0]["msg_id"]')

stop_broker
check "the broker stops with exit 0" test "$BRC" -eq 0

audit
expect 0 "read the audit log"
jl "len([x for x in L if x['event'] == 'REJECTED' and x['sender'] == 'politie-mn' and x['reason'] in ('BAD_SIGNATURE', 'SENDER_MISMATCH') and x.get('msg_id', '') == '']) == 2" \
    "X's two refusals are audited, as X's, without a msg_id"
jl "not any(x['event'] == 'REJECTED' and x['sender'] == 'politie-mn' and x.get('msg_id', '') == '$Y_MSG' for x in L)" \
    "no refusal of X names Y's msg_id"
jl "any(x['event'] == 'REJECTED' and x['sender'] == 'gemeente-diemen' and x['reason'] == 'DUPLICATE' and x.get('msg_id', '') == '$Y_MSG' for x in L)" \
    "twin: Y's own refused resubmission names Y's msg_id"
jl "any(x['event'] == 'REJECTED' and x['sender'] == 'politie-mn' and x['reason'] == 'POLICY' and x.get('msg_id', '') == '$X_MSG' for x in L)" \
    "twin: X's own refused message names X's msg_id"

run "$AUDIT" replay --db broker --format jsonl --msg "$Y_MSG"
expect 0 "replay --msg Y's message"
jl "len(L) >= 2 and all(r['sender'] == 'gemeente-diemen' for r in L)" \
    "replay --msg Y's message shows Y's records only"
jl "[r['event'] for r in L if r['event'] in ('submitted', 'rejected')] == ['submitted', 'rejected']" \
    "its submitted record and Y's one refused resubmission"
run "$AUDIT" replay --db broker --msg "$Y_MSG"
expect 0 "replay --msg Y's message, as text"
stdout_says "rejected   1 later attempt(s) with the same msg_id" \
    "the life of Y's message counts Y's own attempt only"
says_not "from politie-mn" "and shows no refusal of X"

run "$AUDIT" replay --db broker --format jsonl --node gemeente-diemen
expect 0 "replay --node gemeente-diemen"
jl "not any(r['event'] == 'rejected' and r['sender'] == 'politie-mn' for r in L)" \
    "X's refusals are not shown as Y's through Y's message"

# prove needs a stored checkpoint that covers Y's last record: the broker
# stored one when it stopped.
run "$AUDIT" prove --db broker "$Y_MSG" --out proof.json
expect 0 "prove Y's message"
cp proof.json "$T/.out"
jo "D['msg_id'] == '$Y_MSG' and len(D['records']) >= 2" "the bundle is for Y's message"
jo "sum(1 for r in D['records'] if r.get('event') == 'rejected') == 1" \
    "its one rejected record is Y's own (X's refusals are not in it)"
run "$AUDIT" check-proof proof.json --anchor admin/network.pub
expect 0 "check-proof on Y's bundle"
stdout_says "from         gemeente-diemen (the sender's signature on the header verified)" \
    "it names Y as the sender, from the signed header"
stdout_says "to           politie-mn" "and X as the recipient"
stdout_says "rejected   (the broker's claim: refused, reason duplicate)" \
    "Y's refused resubmission is shown with its reason, as the broker's claim"

run "$AUDIT" prove --db broker "$X_MSG" --out proof-x.json
expect 0 "prove X's message, which the broker never accepted"
run "$AUDIT" check-proof proof-x.json --anchor admin/network.pub
expect 0 "check-proof on it"
stdout_says "(no submitted record: the broker never accepted this message" \
    "it says the message was never accepted"
says_not "from         " "and names no sender it could not verify"
stdout_says "(the broker's claim: refused, reason policy, the default deny (rule 0))" \
    "its refusal by the policy is shown with the rule"
run "$AUDIT" check-proof proof-x.json --anchor admin/network.pub --json
expect 0 "check-proof --json on it"
jo "D['message'] is None and [r['reason'] for r in D['records']] == ['policy'] and D['records'][0]['rule'] == 0" \
    "check-proof --json: no message, one POLICY refusal"

run "$AUDIT" replay --db broker --msg "$X_MSG"
expect 0 "replay --msg X's refused message"
stdout_says "never accepted: no submitted record (1 rejected attempt(s))" \
    "twin: X's refused message shows its refusal"
done_testing

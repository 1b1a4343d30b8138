#!/usr/bin/env bash
# Directory changes at the broker: a newer version installed on SIGHUP is
# audited, pushed to connected nodes and served as a chain; a node revoked in
# it while connected gets the version, then an error that ends its
# connection (REVOKED, with the version), and the same error for every
# later frame, nothing else; it can then neither connect, submit nor
# receive, and is no longer a recipient;
# a restart with an older directory file changes nothing (the persisted
# version wins); a directory without this broker's keys is refused at start.
. "$(dirname "$0")/broker_lib.sh"

setup_broker_network || done_testing
cp dir.v1 current.dir
BROKER_DIR=current.dir
sed 's/"woonfraude"/"adrescheck"/' signal.json >check.json
start_broker || done_testing

peer politie-mn connect-only --listen-ms 300
jl 'E("summary")' "politie-mn can connect before its revocation"
peer gemeente-diemen submit --to politie-mn --json signal.json
jl 'len(E("ack")) == 1' "a message for politie-mn is queued while it is offline"
queued=$(jget 'E("ack")[0]["msg_id"]')

peer politie-mn seal --to gemeente-diemen --json check.json --kind reply --out before.env
jl 'E("sealed")' "politie-mn seals a reply before its revocation (kept, not sent)"
run "$KEYS" revoke --dir admin politie-mn --reason "key lost"
expect 0 "the administrators revoke politie-mn"
publish dir.v2 || done_testing

# A node connected during the change gets the new version pushed.
timeout 30 "$PEER" --home n-belastingdienst --anchor admin/network.pub --directory dir.v1 \
    --broker "$ENDPOINT" connect-only --listen-ms 4000 >pushed.json 2>&1 &
LPID=$!
timeout 30 "$PEER" --home n-politie-mn --anchor admin/network.pub --directory dir.v1 \
    --broker "$ENDPOINT" connect-only --listen-ms 6000 --poke-after-refusal 3 >cutoff.json 2>&1 &
RPID=$!
wait_for 10 grep -q 'msg="node connected" node=belastingdienst' "$BLOG" \
    || not_ok "a listener connects"
wait_for 10 grep -q 'msg="node connected" node=politie-mn' "$BLOG" \
    || not_ok "politie-mn connects (to be revoked while connected)"
cp dir.v2 current.dir
kill -HUP "$BPID"
wait_for 10 grep -q 'msg="directory installed" version=2' "$BLOG"
check "SIGHUP installs the newer directory (version 2)" test $? -eq 0
wait "$LPID"
cp pushed.json "$T/.out"
jl 'any(d["versions"] == [2] for d in E("directory_push"))' \
    "the new version is pushed to a connected node"
wait "$RPID"
cp cutoff.json "$T/.out"
jl '[d["versions"] for d in E("directory_push")] == [[2]]' \
    "politie-mn, connected when it is revoked, gets version 2 too (its signed reason), once"
jl 'len(E("error")) >= 1 and E("error")[0]["reason"] == "REVOKED" and E("error")[0]["directory_version"] == 2 and "msg_id" not in E("error")[0] and E("error")[0]["detail"] == "revoked in version 2: ask your administrator"' \
    "then one error ends its connection: REVOKED, version 2, what to do"
jl 'len(E("poked")) == 1 and len(E("error")) == 4 and all(e["reason"] == "REVOKED" and e["directory_version"] == 2 for e in E("error"))' \
    "each of its 3 later frames gets the same error"
jl 'set(e["event"] for e in L[[i for i, e in enumerate(L) if e["event"] == "error"][0]:]) == {"error", "poked", "summary"} and L.index(E("directory_push")[0]) < L.index(E("error")[0])' \
    "and nothing else after the push: no checkpoint, its directory requests not served"
grep -q 'msg="node no longer current: connection cut off" node=politie-mn version=2 reason=revoked' "$BLOG"
check "the broker logs the cut-off with its reason" test $? -eq 0

peer politie-mn --timeout-ms 1500 recv --count 1
jl 'len(E("deliver")) == 0 and E("summary")[0]["frames"] == 0' \
    "the revoked node gets nothing, not even the message queued for it before"
peer politie-mn --timeout-ms 1500 submit --to belastingdienst --json signal.json
jl 'not E("ack") and not E("error") and E("timeout")' "the revoked node cannot submit"
peer gemeente-diemen submit --to politie-mn --json signal.json
jl 'len(E("error")) == 1 and E("error")[0]["reason"] == "UNKNOWN_RECIPIENT"' \
    "a message to the revoked node is refused (UNKNOWN_RECIPIENT)"
peer gemeente-diemen submit-raw before.env
jl 'len(E("error")) == 1 and E("error")[0]["reason"] == "REVOKED"' \
    "an envelope signed by the revoked node, relayed by another, is refused (REVOKED)"
PEER_DIR=dir.v2 peer gemeente-diemen submit --to belastingdienst --json signal.json
jl 'len(E("ack")) == 1' "the other nodes go on (sealed with version 2)"
PEER_DIR=dir.v2 peer gemeente-diemen dir-request --after 0
jl 'E("directory_push")[0]["versions"] == [1, 2]' "the chain of versions is served, oldest first"
PEER_DIR=dir.v2 peer gemeente-diemen dir-request --after 1
jl 'E("directory_push")[0]["versions"] == [2]' "a node one version behind gets only the newer one"

audit
jl 'any(r["event"] == "DIRECTORY_INSTALLED" and r["directory_version"] == 2 for r in L)' \
    "the installation of version 2 is audited"
jl 'any(r["event"] == "AUTH_FAILED" and len(r["node"]) == 64 for r in L)' \
    "the revoked node's connection attempts are audited (auth-failed, with its key)"
jl 'len([r for r in L if r["event"] == "AUTH_FAILED" and r["node"] == "politie-mn" and r["reason"] == "REVOKED"]) == 1' \
    "its cut-off is audited once (auth-failed, reason REVOKED), not once per frame"

# ---- restart with the older file --------------------------------------------

stop_broker
check "the broker stops" test "$BRC" -eq 0
BROKER_DIR=dir.v1
start_broker || done_testing
grep -q 'not newer than the installed version' "$BLOG"
check "restarted with the older file, the broker keeps version 2 and says so" test $? -eq 0
peer politie-mn --timeout-ms 1500 recv --count 1
jl 'E("summary")[0]["frames"] == 0' "the revoked node is still refused after the restart"
PEER_DIR=dir.v2 peer gemeente-diemen dir-request --after 0
jl 'E("directory_push")[0]["versions"] == [1, 2]' "both versions are still held"
stop_broker

# ---- a directory without this broker's keys ------------------------------------

rm -rf broker2
run "$BROKER" keygen --home broker2 --no-passphrase
run timeout 10 "$BROKER" run --home broker2 --anchor admin/network.pub --directory dir.v2 \
    --listen "ipc://$T/other.ipc"
expect 1 "a broker whose keys are not in the directory refuses to start"
says "this broker's keys are not in directory version 2: approve broker2/identity.request and publish" \
    "it says what to do"
check "it left nothing running" test ! -S "$T/other.ipc"
done_testing

#!/usr/bin/env bash
# Unauthenticated ZeroMQ peers get nothing: a DEALER without any security
# mechanism (ZMTP NULL), a CurveZMQ client with a partner's real keys but a
# wrong server key, and CurveZMQ clients whose keys no directory lists (20 at
# once, reconnecting every 10 ms) receive no frame at all, and nothing they
# send is acted on. The first two fail the handshake before the ZAP handler
# is asked and leave no audit record; the unlisted keys are refused by ZAP
# (status 400) and each is audited as auth-failed with its key. After each,
# a partner is still served. (Revoked keys: broker_revoke.sh; one unlisted
# key, its submit and its audit record: broker_rejects.sh.)
. "$(dirname "$0")/hostile_lib.sh"

setup_broker_network || done_testing
make_probe_signal
start_broker || done_testing

# auth_failed_count: the number of auth-failed records in the audit log.
auth_failed_count() {
    audit
    jget 'len([r for r in L if r["event"] == "AUTH_FAILED"])'
}

# ---- no security mechanism at all -------------------------------------------

hostile plain --listen-ms 2000
expect 0 "a DEALER without CurveZMQ connects and sends a credit and a directory request"
grep '"summary"' "$T/.out" | sed 's/^/# /' 
jl 'E("summary")[0]["frames"] == 0' "it receives no frame at all"
jl 'not E("summary")[0]["control_answered"]' "its directory request is not answered"
jl 'E("summary")[0]["handshake_failed"] >= 1 and E("summary")[0]["handshake_ok"] == 0' \
    "every handshake fails (mechanism mismatch)"
still_serving "a peer without CurveZMQ"

# ---- the right client keys, the wrong server key ------------------------------

hostile wrong-server-key --home n-gemeente-diemen --listen-ms 2000
expect 0 "a CurveZMQ client with gemeente-diemen's keys but a wrong server key"
grep '"summary"' "$T/.out" | sed 's/^/# /' 
jl 'E("summary")[0]["frames"] == 0 and not E("summary")[0]["control_answered"]' \
    "it receives no frame and no answer"
jl 'E("summary")[0]["handshake_failed"] >= 1 and E("summary")[0]["handshake_ok"] == 0' \
    "every handshake fails (the broker cannot open its HELLO)"
still_serving "a peer with the wrong server key"

n=$(auth_failed_count)
check "neither left an audit record: they never reached the ZAP handler ($n auth-failed)" \
    test "$n" -eq 0

# ---- keys that no directory lists ---------------------------------------------

hostile unlisted-key --sockets 20 --listen-ms 3000
expect 0 "20 CurveZMQ clients with fresh keys that no directory lists, for 3 s"
grep '"summary"' "$T/.out" | sed 's/^/# /' 
jl 'E("summary")[0]["frames"] == 0' "none of them receives a frame"
jl 'E("summary")[0]["handshake_failed"] >= 1 and E("summary")[0]["handshake_ok"] == 0' \
    "their handshakes are refused (ZAP status 400)"
jl 'E("summary")[0]["failure"] == "handshake-failed-auth" and E("summary")[0]["failure_value"] == 400' \
    "the refusal is an authentication failure with status 400"
still_serving "20 unlisted keys"
audit
jl 'len({r["node"] for r in L if r["event"] == "AUTH_FAILED" and len(r["node"]) == 64}) == 20' \
    "each of the 20 refused keys is audited (auth-failed, with the key in hex)"
jl 'not [r for r in L if r["event"] in ("NODE_CONNECTED", "SUBMITTED", "REJECTED") and len(r["node"] + r["sender"]) == 64]' \
    "no refused key was ever taken for a connected node"
grep -q 'msg="connection refused".*why="transport key of no current certificate"' "$BLOG"
check "the broker logs why the keys were refused" test $? -eq 0

# ---- a partner's connection is unaffected ------------------------------------

peer politie-mn connect-only --listen-ms 1500
jl 'E("checkpoint") and all(c["valid"] for c in E("checkpoint"))' \
    "politie-mn connects normally afterwards and gets the broker's signed checkpoint"
check "the broker is still running" broker_alive
no_sanitizer_report
stop_broker
check "the broker stops with exit 0" test "$BRC" -eq 0
done_testing

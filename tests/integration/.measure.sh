#!/usr/bin/env bash
. "$(dirname "$0")/node_lib.sh"
setup_network || done_testing
signal sig.json woonfraude "x"
"$PY" - <<'PY'
import base64, json, os
sig = json.load(open("sig.json"))
sig["attachments"] = [{"name": "gevel.jpg", "media_type": "image/jpeg",
                       "data_base64": base64.b64encode(os.urandom(300000)).decode()}]
open("big.json", "w").write(json.dumps(sig))
PY
start_broker; start_node gemeente-diemen; start_node politie-mn
wait_until 20 connected gemeente-diemen; wait_until 20 connected politie-mn
N=${N:-40}
sz0=$(stat -c %s n-politie-mn/store/data.mdb)
for i in $(seq 1 $N); do "$NODE" send --home n-gemeente-diemen --to politie-mn --json big.json >> ids; done
for m in $(cat ids); do wait_until 60 inbox_has politie-mn "$m"; done
sleep 2
echo "N=$N before=$sz0 after=$(stat -c %s n-politie-mn/store/data.mdb) sender=$(stat -c %s n-gemeente-diemen/store/data.mdb)"
mdb_stat -ef n-politie-mn/store | grep -E "Free pages|Number of pages used|Entries" | head -5
for db in messages sent seen inbox; do echo "== $db"; mdb_stat -s $db n-politie-mn/store | grep -E "pages|Entries"; done
echo "== sender sent"; mdb_stat -s sent n-gemeente-diemen/store | grep -E "pages|Entries"
mdb_stat -ef n-gemeente-diemen/store | grep -E "Free pages|Number of pages used" 
for m in $(cat ids); do "$NODE" ack --home n-politie-mn "$m" >/dev/null; done
sleep 1
echo "after ack: $(stat -c %s n-politie-mn/store/data.mdb)"
mdb_stat -ef n-politie-mn/store | grep -E "Free pages|Number of pages used"
mdb_stat -s messages n-politie-mn/store | grep -E "Overflow"
stop_all
done_testing

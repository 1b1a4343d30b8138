#!/usr/bin/env bash
# Install what is missing, build, and run every test: once normally and once
# under AddressSanitizer + UndefinedBehaviorSanitizer. Ends with the line
# "N passed, N failed" counted from meson's test results.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test || exit 1

passed=0
failed=0
run_suite() {
  local dir=$1; shift
  if [ ! -d "$dir" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  ninja -C "$dir" || return 1
  meson test -C "$dir" --print-errorlogs --num-processes 3 --no-suite packaging
  local log="$dir/meson-logs/testlog.json"
  [ -f "$log" ] || return 1
  local p f
  p=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(1 for x in r if x["result"] in ("OK","EXPECTEDFAIL")))' "$log")
  f=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(1 for x in r if x["result"] not in ("OK","EXPECTEDFAIL","SKIP")))' "$log")
  echo "$dir: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
}

build_failed=0
run_suite build -Dwerror=true || build_failed=1
run_suite build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
  || build_failed=1
if [ "$build_failed" -ne 0 ]; then
  failed=$((failed + 1))
  echo "a build or test run could not complete"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

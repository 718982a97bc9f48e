#!/usr/bin/env bash
# Dependencies only point down: the pure crates never link runtimes, networking, HTTP or ML
# frameworks, and the gateway never links candle. Fails with the offending path.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
check() { # crate, forbidden dependency...
    local crate=$1; shift
    local tree
    tree=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u)
    for bad in "$@"; do
        if grep -qx "$bad" <<<"$tree"; then
            echo "check-deps: $crate depends on $bad (not allowed)"
            fail=1
        fi
    done
}

pure_forbidden=(tokio libp2p candle-core axum hyper redb llama-cpp-2 reqwest commonware-runtime)
check agora-types "${pure_forbidden[@]}"
check agora-ledger "${pure_forbidden[@]}"
check agora-verify "${pure_forbidden[@]}"
if cargo metadata --no-deps --format-version 1 | grep -q '"name":"agora-gateway"'; then
    check agora-gateway candle-core llama-cpp-2
fi
# Test-only crates never reach the shipped binary.
check agora proptest agora-testkit

# ARCHITECTURE.md's crate map and dependency picture match the workspace.
python3 scripts/deps-picture.py --check || fail=1

if [ "$fail" -ne 0 ]; then exit 1; fi
echo "check-deps: ok"

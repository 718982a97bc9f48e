#!/usr/bin/env bash
# The README's two commands, tried as a new user would: a fresh clone of this checkout's HEAD
# and an empty model directory (a warm cargo target directory is allowed).
#  1. With cmake off the PATH and libclang not findable, both commands name what is missing
#     (with the install command) and exit before any build starts: a stand-in `cargo` first on
#     the PATH records any call.
#  2. With the prerequisites present, `scripts/dev.sh` fetches the models, builds, starts the
#     network and prints a banner whose copy-paste `curl` example gets a chat answer; Ctrl-C
#     then stops it cleanly.
#   tests/readme/fresh_clone.sh        (.ci/run runs it after the test command)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
pid=""
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "fresh-clone: FAIL: $*" >&2; [[ -f "$tmp/dev.log" ]] && tail -n 40 "$tmp/dev.log" >&2; exit 1; }

git clone --quiet "$repo" "$tmp/agora"
cd "$tmp/agora"

# --- 1. prerequisites hidden ---------------------------------------------------------------
mkdir -p "$tmp/bin" "$tmp/no-libclang"
hidden_path=""
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
    [[ -d "$d" ]] || continue
    if [[ -e "$d/cmake" ]]; then
        # A copy of this PATH entry without cmake.
        m="$tmp/path$(echo "$d" | tr / _)"
        mkdir -p "$m"
        for f in "$d"/*; do
            [[ "$(basename "$f")" == cmake ]] || ln -s "$f" "$m/" 2>/dev/null || true
        done
        d="$m"
    fi
    hidden_path="${hidden_path:+$hidden_path:}$d"
done
cat >"$tmp/bin/cargo" <<STUB
#!/bin/sh
touch "$tmp/cargo-was-called"
exit 1
STUB
chmod +x "$tmp/bin/cargo"
for cmd in scripts/dev.sh scripts/test.sh; do
    rm -f "$tmp/cargo-was-called"
    set +e
    PATH="$tmp/bin:$hidden_path" LIBCLANG_PATH="$tmp/no-libclang" AGORA_NO_INSTALL=1 \
        AGORA_MODELS_DIR="$tmp/models-hidden" bash "$cmd" >"$tmp/hidden.log" 2>&1
    rc=$?
    set -e
    cat "$tmp/hidden.log"
    [[ $rc -eq 2 ]] || fail "$cmd exited $rc with the prerequisites hidden (want 2)"
    grep -q "cmake" "$tmp/hidden.log" || fail "$cmd did not name cmake"
    grep -q "libclang" "$tmp/hidden.log" || fail "$cmd did not name libclang"
    grep -q "apt-get install -y .*cmake.*libclang-dev" "$tmp/hidden.log" || fail "$cmd did not print the install command"
    [[ ! -e "$tmp/cargo-was-called" ]] || fail "$cmd called cargo before naming the prerequisites"
    [[ ! -e "$tmp/models-hidden" ]] || fail "$cmd fetched models before naming the prerequisites"
    echo "fresh-clone: ok: $cmd names the hidden prerequisites before any build"
done

# --- 2. prerequisites present: the run command, then the banner's curl example ----------------
export AGORA_MODELS_DIR="$tmp/models"
setsid bash scripts/dev.sh >"$tmp/dev.log" 2>&1 &
pid=$!
deadline=$(( $(date +%s) + ${FRESH_CLONE_TIMEOUT_S:-3600} ))
until grep -q "try:  curl" "$tmp/dev.log"; do
    kill -0 "$pid" 2>/dev/null || fail "scripts/dev.sh exited before its banner"
    [[ $(date +%s) -lt $deadline ]] || fail "no banner within the timeout"
    sleep 2
done
grep -q "fetch-models: ok" "$tmp/dev.log" || fail "the models were not fetched into the empty directory"
example="$(grep -m1 "try:  curl" "$tmp/dev.log" | sed 's/^ *try:  //')"
echo "fresh-clone: running the banner's example: $example"
answer="$(bash -c "$example -s -w '\n%{http_code}'")"
code="$(tail -n1 <<<"$answer")"
body="$(sed '$d' <<<"$answer")"
[[ "$code" == 200 ]] || fail "the banner's curl example got HTTP $code: $body"
python3 - "$body" <<'PY' || fail "the answer is not a chat completion with text: $body"
import json, sys
r = json.loads(sys.argv[1])
assert r["object"] == "chat.completion", r
assert r["choices"][0]["message"]["content"].strip(), r
print("fresh-clone: answer:", r["choices"][0]["message"]["content"][:80].replace("\n", " "))
PY
kill -INT -- "-$pid"
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
kill -0 "$pid" 2>/dev/null && fail "agora dev did not stop within 60 s of Ctrl-C"
set +e; wait "$pid"; rc=$?; set -e
pid=""
[[ $rc -eq 0 ]] || fail "agora dev exited $rc after Ctrl-C"
echo "fresh-clone: ok: the README's run command answers its printed curl example and stops cleanly"

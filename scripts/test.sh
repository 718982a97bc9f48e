#!/usr/bin/env bash
# The test command: check the system prerequisites, fetch the pinned model files, run every
# default-profile test and the doc tests, then drive a network started by `agora dev` with the
# official OpenAI Python SDK.
# `.ci/run` calls exactly this after its lint steps.
#   scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build and the tests need from the system, before any build starts.
bash scripts/prereqs.sh test

export AGORA_MODELS_DIR="${AGORA_MODELS_DIR:-$PWD/models}"
bash scripts/fetch-models.sh "$AGORA_MODELS_DIR"

profile=default
if [ "${CI:-}" = "true" ]; then profile=ci; fi
cargo nextest run --workspace --profile "$profile" "$@"
cargo test --doc --workspace --quiet

# The OpenAI SDK against `agora dev` (same dev-profile binary the tests built).
venv=.venv-openai
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/openai/requirements.txt
cargo build --quiet -p agora
AGORA_BIN="${CARGO_TARGET_DIR:-target}/debug/agora" "$venv/bin/python" tests/openai/test_openai.py

# The dashboard in headless Chromium against `agora dev --providers 2` (playwright-core, pinned
# by tests/browser/package-lock.json); screenshots in tests/browser/artifacts/.
(cd tests/browser && npm ci --no-audit --no-fund --silent)
AGORA_CHROMIUM="${AGORA_CHROMIUM:-$(command -v chromium)}" \
    AGORA_BIN="${CARGO_TARGET_DIR:-target}/debug/agora" node tests/browser/dashboard.mjs

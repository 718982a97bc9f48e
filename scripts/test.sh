#!/usr/bin/env bash
# The test command: fetch the pinned model files, then run every default-profile test and the
# doc tests. `.ci/run` calls exactly this after its lint steps.
#   scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

export AGORA_MODELS_DIR="${AGORA_MODELS_DIR:-$PWD/models}"
bash scripts/fetch-models.sh "$AGORA_MODELS_DIR"

profile=default
if [ "${CI:-}" = "true" ]; then profile=ci; fi
cargo nextest run --workspace --profile "$profile" "$@"
cargo test --doc --workspace --quiet

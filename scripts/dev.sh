#!/usr/bin/env bash
# The run command: a whole local Agora network (validator, provider, OpenAI-compatible gateway).
# Checks the system prerequisites before any build (installs them on Debian/Ubuntu as root,
# names the one command to run elsewhere), fetches and verifies the models `agora dev` serves,
# then builds and starts `agora dev`. Extra arguments go to `agora dev` (`--reset`, `--help`).
#   scripts/dev.sh [agora dev flags]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/prereqs.sh run
export AGORA_MODELS_DIR="${AGORA_MODELS_DIR:-$PWD/models}"
bash scripts/fetch-models.sh "$AGORA_MODELS_DIR" smollm2 minilm
exec cargo run --release --locked -- dev "$@"

#!/usr/bin/env bash
# Runs queuegate locally: starts (or installs) MariaDB and Redis, builds the release binary,
# migrates, seeds the demo concert and serves on LISTEN_ADDR (default 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust from your distribution or rustup" >&2
  exit 1
fi
cargo build --release --locked --bin queuegate
bin="$CARGO_TARGET_DIR/release/queuegate"
"$bin" migrate
"$bin" seed
exec "$bin" serve

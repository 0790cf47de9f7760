#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this project's kind: starts what the tests need
# (a throwaway PostgreSQL), runs formatting and lint checks and every test, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib/postgres.sh

work=$(mktemp -d /tmp/ionroller-test.XXXXXX)
chmod 755 "$work"
cleanup() {
  pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT

if ! pg_start "$work/pg"; then
  if [ "${CI:-}" = true ]; then
    echo "PostgreSQL could not be started; CI cannot run without it." >&2
    exit 1
  fi
  echo "*** PostgreSQL unavailable: its tests will be SKIPPED (loudly) ***" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace "$@"

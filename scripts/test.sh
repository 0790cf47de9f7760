#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this project's kind: sets up what the tests need
# (a throwaway PostgreSQL; the AWS emulators; Chromium and playwright-core for the dashboard
# test), runs formatting and lint checks and every test, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean clone never reuses incremental state, which would only take disk space.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
source scripts/lib/postgres.sh
source scripts/lib/aws_emulators.sh
source scripts/lib/kurrentdb_standin.sh
source scripts/lib/topology_tools.sh

work=$(mktemp -d /tmp/ionroller-test.XXXXXX)
chmod 755 "$work"
cleanup() {
  aws_emulators_stop "$work/aws"
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

# The AWS driver's tests run against moto, ministack and the EB stand-in (tests/aws), installed
# into a private venv and started on free ports; the standard AWS_* variables point at them.
if ! { aws_emulators_install && aws_emulators_start "$work/aws"; }; then
  if [ "${CI:-}" = true ]; then
    echo "The AWS emulators could not be started; CI cannot run without them." >&2
    exit 1
  fi
  echo "*** AWS emulators unavailable: the AWS tests will be SKIPPED (loudly) ***" >&2
fi

if ! kurrentdb_standin_install; then
  if [ "${CI:-}" = true ]; then
    echo "The KurrentDB stand-in could not be installed; CI cannot run without it." >&2
    exit 1
  fi
  echo "*** KurrentDB stand-in unavailable: the KurrentDB tests will be SKIPPED (loudly) ***" >&2
fi

if ! topology_tools_install; then
  if [ "${CI:-}" = true ]; then
    echo "docker-compose and hadolint could not be installed; CI cannot run without them." >&2
    exit 1
  fi
  echo "*** docker-compose/hadolint unavailable: the topology test will be SKIPPED (loudly) ***" >&2
fi

# Trail's dashboard test drives Debian's Chromium with playwright-core (no browser download).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Chromium (Debian package)" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || true
fi
if command -v npm >/dev/null; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent) || echo "*** npm ci failed: the browser test will report it ***" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== crate graph"
scripts/check-crate-graph.sh
# The end-to-end tests (tests/) run the `ionroller` and `trail` binaries of other packages,
# which `cargo test` alone does not build; building them here shares the target dir, so it
# costs only their link.
echo "== cargo build (the binaries the end-to-end tests run)"
cargo build --workspace --bins --quiet
if ! kurrentdb_standin_protos && [ "${CI:-}" = true ]; then
  exit 1
fi
echo "== cargo test"
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
# The disk a run needs, so a CI machine that runs short can be told from a failing test.
echo "== disk: target $(du -sh target 2>/dev/null | cut -f1); free $(df -h . | awk 'NR==2 {print $4}')"
exit "$status"

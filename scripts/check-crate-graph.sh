#!/usr/bin/env bash
# The crate graph's promises (ARCHITECTURE.md, "Code map"), checked on the real dependency tree:
# the core and the projections build without a runtime, web framework, database driver or AWS
# crate, the roller and trail do not depend on each other, and shared holds no database driver.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
# must_not CRATE PATTERN WHY: CRATE's normal (non-dev) dependency tree must not match PATTERN.
must_not() {
  local found
  found=$(cargo tree -p "$1" -e normal --prefix none --quiet | awk '{print $1}' | sort -u | grep -E "^($2)$" || true)
  if [ -n "$found" ]; then
    echo "crate graph: $1 depends on $(echo "$found" | tr '\n' ' ')— $3" >&2
    fail=1
  fi
}
# The AWS SDK's crates (not aws-lc-rs, the TLS crypto library the KurrentDB client links).
sdk='aws-(sdk|config|smithy|types|runtime|sigv4|credential)[a-z0-9-]*'
io="tokio|axum|hyper|rusqlite|tokio-postgres|postgres|kurrentdb|tonic|$sdk|reqwest"
must_not ionroller-core "$io" "the core must do no I/O"
must_not ionroller-projections "$io" "projections are pure folds"
must_not ionroller-shared "axum|hyper|rusqlite|tokio-postgres|postgres|kurrentdb|tonic|$sdk|reqwest|tokio" "shared is contracts only"
must_not ionroller-roller "ionroller-trail|ionroller-cli|ionroller-aws|$sdk" "the roller must not know trail or a concrete cloud"
must_not ionroller-trail "ionroller-roller|ionroller-core|ionroller-cli|$sdk" "trail must not know the roller"
must_not ionroller-auth "ionroller-roller|ionroller-core|ionroller-trail|ionroller-cli|$sdk|rusqlite|tokio-postgres" "identity is shared by both services and knows neither"
must_not ionroller-aws "ionroller-roller|ionroller-core|ionroller-trail|rusqlite|tokio-postgres" "the AWS driver depends only on shared"
[ "$fail" = 0 ] && echo "crate graph: arrows run one way"
exit "$fail"

# AWS emulators for the tests: moto (S3, classic ELB, Auto Scaling, EC2), ministack
# (CloudWatch, which the current SDK speaks CBOR to and moto does not) and ionroller's own
# Elastic Beanstalk stand-in (tests/aws/eb_standin.py; moto's EB is a stub). Also schemathesis,
# in a venv of its own beside them, which tests/tests/openapi_conformance.rs runs against both
# services' OpenAPI documents. Sourced by scripts/test.sh.
#
#   aws_emulators_install          # venvs under $IONROLLER_AWS_VENV (reused when present),
#                                  # schemathesis in $IONROLLER_AWS_VENV/schemathesis
#   aws_emulators_start DIR        # free loopback ports; exports the standard AWS_* variables
#   aws_emulators_stop DIR

IONROLLER_AWS_VENV=${IONROLLER_AWS_VENV:-$HOME/.cache/ionroller/aws-emulators}
MOTO_VERSION=5.2.5
MINISTACK_VERSION=1.5.33
CBOR2_VERSION=6.3.0
SCHEMATHESIS_VERSION=4.32.5

aws_emulators_install() {
  local v=$IONROLLER_AWS_VENV
  command -v python3 >/dev/null || { echo "python3 is missing" >&2; return 1; }
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 || true
    fi
  fi
  mkdir -p "$v"
  if ! "$v/moto/bin/python" -c "import moto, boto3; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
    echo "== installing moto $MOTO_VERSION into $v/moto" >&2
    rm -rf "$v/moto" && python3 -m venv "$v/moto" &&
      "$v/moto/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2 || return 1
  fi
  if ! "$v/ministack/bin/python" -c "import cbor2" 2>/dev/null || [ ! -x "$v/ministack/bin/ministack" ]; then
    echo "== installing ministack $MINISTACK_VERSION into $v/ministack" >&2
    rm -rf "$v/ministack" && python3 -m venv "$v/ministack" &&
      "$v/ministack/bin/pip" install -q --disable-pip-version-check \
        "ministack==$MINISTACK_VERSION" "cbor2==$CBOR2_VERSION" >&2 || return 1
  fi
  # Its own venv: its dependencies (hypothesis, httpx, …) must not move moto's.
  if ! "$v/schemathesis/bin/schemathesis" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $v/schemathesis" >&2
    rm -rf "$v/schemathesis" && python3 -m venv "$v/schemathesis" &&
      "$v/schemathesis/bin/pip" install -q --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" >&2 || return 1
  fi
  export IONROLLER_SCHEMATHESIS="$v/schemathesis/bin/schemathesis"
}

_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something answers HTTP on the port (any status).
_wait_http() {
  local port=$1 name=$2 i
  for i in $(seq 1 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start on port $port" >&2
  return 1
}

aws_emulators_start() {
  local dir=$1 v=$IONROLLER_AWS_VENV moto_port ms_port
  mkdir -p "$dir"
  moto_port=$(_free_port)
  "$v/moto/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  _wait_http "$moto_port" moto || return 1

  ms_port=$(_free_port)
  (cd "$dir" && GATEWAY_PORT=$ms_port BIND_HOST=127.0.0.1 TMPDIR=$dir \
    exec "$v/ministack/bin/ministack") >"$dir/ministack.log" 2>&1 &
  echo $! >"$dir/ministack.pid"
  _wait_http "$ms_port" ministack || return 1

  # A page of one environment: every service with two environments makes the driver follow
  # DescribeEnvironments' NextToken.
  rm -f "$dir/eb.port"  # a stale one from an earlier start would name a dead port
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 EB_STANDIN_PAGE_SIZE=1 \
    "$v/moto/bin/python" tests/aws/eb_standin.py --port 0 --port-file "$dir/eb.port" \
    --moto "http://127.0.0.1:$moto_port" >"$dir/eb.log" 2>&1 &
  echo $! >"$dir/eb.pid"
  local i
  for i in $(seq 1 100); do [ -s "$dir/eb.port" ] && break; sleep 0.1; done
  [ -s "$dir/eb.port" ] || { echo "the EB stand-in did not start:" >&2; cat "$dir/eb.log" >&2; return 1; }

  # The standard variables, exactly as a user would point the SDK elsewhere.
  export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
  export AWS_ENDPOINT_URL_CLOUDWATCH="http://127.0.0.1:$ms_port"
  export AWS_ENDPOINT_URL_ELASTIC_BEANSTALK="http://127.0.0.1:$(cat "$dir/eb.port")"
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  export AWS_EC2_METADATA_DISABLED=true
  # moto answers operations it lacks with a 500 the SDK would retry; tests want one attempt,
  # and the roller's own retry (recorded as events) is what they check.
  export AWS_MAX_ATTEMPTS=1
  export IONROLLER_AWS_EMULATORS=1
  echo "== AWS emulators: moto $AWS_ENDPOINT_URL, ministack $AWS_ENDPOINT_URL_CLOUDWATCH, EB stand-in $AWS_ENDPOINT_URL_ELASTIC_BEANSTALK" >&2
}

aws_emulators_stop() {
  local dir=$1 f
  for f in eb ministack moto; do
    if [ -s "$dir/$f.pid" ]; then kill "$(cat "$dir/$f.pid")" 2>/dev/null || true; fi
  done
}

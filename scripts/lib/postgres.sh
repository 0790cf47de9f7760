# Throwaway PostgreSQL for tests and benchmarks. Source this file, then:
#   pg_start DIR   -> starts a cluster in DIR on a free loopback port, exports IONROLLER_TEST_PG_URL
#   pg_stop DIR    -> stops it
# Uses Debian's postgresql binaries, installing them with apt-get when missing and we are root.

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

pg_install() {
  pg_bindir >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing PostgreSQL (Debian package)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  pg_bindir >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as the PostgreSQL owner: initdb refuses to run as root.
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

pg_start() {
  local dir=$1 bin port
  pg_install || return 1
  bin=$(pg_bindir)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown postgres "$dir"
    chmod 755 "$(dirname "$dir")"
  fi
  port=$(free_port)
  pg_as_owner "$bin/initdb" -D "$dir/data" -U ionroller --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  export IONROLLER_TEST_PG_URL="postgresql://ionroller@127.0.0.1:$port/postgres"
  echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir)" >&2
}

pg_stop() {
  local dir=$1 bin
  bin=$(pg_bindir) || return 0
  [ -d "$dir/data" ] && pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

#!/bin/sh
# Graceful HAProxy reload in master-worker mode: the master re-reads the
# configuration and starts new workers; old workers finish their requests.
#
# The watcher runs this only after HAProxy was started (its first render
# happens before, without this command). HAProxy reads its configuration
# before it writes its pid file, so a render that lands between the two
# would be lost if this returned when the pid file is missing: HAProxy would
# keep the older configuration until the next change. Wait for the pid file
# (up to 15 s) and reload then; a reload HAProxy did not need is harmless.
pidfile="${HAPROXY_PIDFILE:-/tmp/haproxy.pid}"
i=0
[ -s "$pidfile" ] || echo "lb-reload: waiting for HAProxy's pid file $pidfile" >&2
while [ ! -s "$pidfile" ]; do
  i=$((i + 1))
  if [ "$i" -gt 150 ]; then
    echo "lb-reload: no $pidfile after 15 s; HAProxy is not running" >&2
    exit 1
  fi
  sleep 0.1
done
kill -USR2 "$(cat "$pidfile")"

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
master="$(cat "$pidfile")"

# HAProxy's workers: the master's children.
workers() { cat /proc/"$master"/task/*/children 2>/dev/null; }

# The master re-executes itself to reload, and a SIGUSR2 that lands while it
# does is lost (signals do not queue): a quick second render would then stay
# unloaded. So each reload waits until it is done, that is until a worker the
# master did not have before appears (the master reads the configuration
# before it forks it); the watcher runs this command once per render, in
# order, so the next signal only comes once this reload has happened.
before=" $(workers | tr '\n' ' ') "
kill -USR2 "$master"
# Without /proc's children lists (or no worker yet) there is nothing to wait for.
[ "$before" != "  " ] || exit 0
i=0
while :; do
  for w in $(workers); do
    case "$before" in *" $w "*) ;; *) exit 0 ;; esac
  done
  i=$((i + 1))
  if [ "$i" -gt 150 ]; then
    echo "lb-reload: HAProxy (pid $master) did not start a new worker within 15 s" >&2
    exit 1
  fi
  sleep 0.1
done

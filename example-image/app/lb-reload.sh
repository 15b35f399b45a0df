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

# wait_for WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds;
# after 15 s, says WHAT did not happen and exits 1.
wait_for() {
  what="$1"
  shift
  i=0
  until "$@"; do
    i=$((i + 1))
    if [ "$i" -gt 150 ]; then
      echo "lb-reload: $what within 15 s" >&2
      exit 1
    fi
    sleep 0.1
  done
}

[ -s "$pidfile" ] || echo "lb-reload: waiting for HAProxy's pid file $pidfile" >&2
wait_for "no $pidfile (HAProxy is not running)" test -s "$pidfile"
master="$(cat "$pidfile")"

# HAProxy's workers: the master's children.
workers() { cat /proc/"$master"/task/*/children 2>/dev/null; }

# True once the master has a worker it did not have before.
new_worker() {
  for w in $(workers); do
    case "$before" in *" $w "*) ;; *) return 0 ;; esac
  done
  return 1
}

# The master re-executes itself to reload, and a SIGUSR2 that lands while it
# does is lost (signals do not queue): a quick second render would then stay
# unloaded. So each reload waits until it is done, that is until a worker the
# master did not have before appears (the master reads the configuration
# before it forks it); the watcher runs this command once per render, in
# order, so the next signal only comes once this reload has happened.
#
# The previous reload is not quite over when its worker appears either: the
# master still finishes starting (it logs its version after the fork), and a
# SIGUSR2 landing then is lost too (seen in CI: the third ingestor never
# reached HAProxy). So without a new worker after 2 s, signal again; a
# second reload is harmless.
before=" $(workers | tr '\n' ' ') "
kill -USR2 "$master"
# Without /proc's children lists (or no worker yet) there is nothing to wait for.
[ "$before" != "  " ] || exit 0
polls=0
reloaded() {
  new_worker && return 0
  polls=$((polls + 1))
  [ $((polls % 20)) -ne 0 ] || kill -USR2 "$master"
  return 1
}
wait_for "HAProxy (pid $master) did not start a new worker" reloaded

#!/bin/sh
# Graceful HAProxy reload in master-worker mode: the master re-reads the
# configuration and starts new workers; old workers finish their requests.
# Before HAProxy has started (the watcher's first render) there is no pid file.
[ -s /tmp/haproxy.pid ] || exit 0
kill -USR2 "$(cat /tmp/haproxy.pid)"

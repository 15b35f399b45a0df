"""Called by the watcher (WATCHES=ingestor) when ingestors come or go."""

import time

import upstreams

LOG = "/tmp/watch.log"


def service_change(service, delta, added=None, removed=None, nodes=None):
    nodes_now = upstreams.render()
    with open(LOG, "a") as f:
        f.write(f"{time.time():.3f} {service} delta={delta:+d} upstreams={len(nodes_now)}\n")
    print(f"{service}: delta {delta:+d}, now {len(nodes_now)} upstreams: {nodes_now}", flush=True)

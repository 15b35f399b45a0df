"""Where the proxy's upstream list lives, and how it is rendered."""

import json
import os

import guestutils

UPSTREAMS = os.environ.get("UPSTREAMS_FILE", "/tmp/upstreams.json")


def render():
    """Looks the ingestors up in etcd (live) and writes the list atomically."""
    nodes = guestutils.get_node_list("ingestor", ports=["api"], minimum=0)
    tmp = UPSTREAMS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(nodes, f)
    os.replace(tmp, UPSTREAMS)
    return nodes


def load():
    try:
        with open(UPSTREAMS) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []

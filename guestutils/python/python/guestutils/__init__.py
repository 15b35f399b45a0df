"""Peer lookups for code running inside an mdo container.

A drop-in for maestro-ng's ``maestro.guestutils``: the same functions,
signatures and return types (ports are ints, node lists are
``"host[:port1[:port2]]"`` strings sorted by container name), reading the
service registry live from etcd instead of a snapshot taken at start.

The environment contract (``CONTAINER_NAME``, ``SERVICE_NAME``,
``ETCD_ENDPOINTS``, ...) and its fallbacks for a real Marathon
(``MESOS_TASK_ID``, ``HOST``, ``MARATHON_APP_ID``, ``ETCD_HOST_ADDRESS`` +
``ETCD_PORT``) are read from ``os.environ`` at every call.

Every failure raises :class:`GuestUtilsError` (also importable as
``MaestroEnvironmentError``).
"""

from ._native import (
    GuestUtilsError,
    __version__,
    get_container_host_address,
    get_container_internal_address,
    get_container_name,
    get_environment_name,
    get_node_list,
    get_port,
    get_service_name,
    get_specific_host,
    specific_port as _specific_port,
    wait_for_nodes,
)


def get_specific_port(service, container, port, default=None):
    """The external (host-side) port ``port`` of container ``container`` of
    ``service``, as an int; ``default`` when it has no such port."""
    return _specific_port(service, container, port, default, exposed=False)


def get_specific_exposed_port(service, container, port, default=None):
    """The exposed (container-side) port ``port`` of container ``container``
    of ``service``, as an int; ``default`` when it has no such port."""
    return _specific_port(service, container, port, default, exposed=True)


#: maestro-ng's name for the same exception.
MaestroEnvironmentError = GuestUtilsError

__all__ = [
    "GuestUtilsError",
    "MaestroEnvironmentError",
    "__version__",
    "get_container_host_address",
    "get_container_internal_address",
    "get_container_name",
    "get_environment_name",
    "get_node_list",
    "get_port",
    "get_service_name",
    "get_specific_exposed_port",
    "get_specific_host",
    "get_specific_port",
    "wait_for_nodes",
]

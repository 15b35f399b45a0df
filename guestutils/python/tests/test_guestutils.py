"""guestutils (the installed wheel) against a real etcd."""

import importlib.util
import inspect
import os
import threading

import pytest

import guestutils
from guestutils import GuestUtilsError, MaestroEnvironmentError


def fleet(etcd):
    etcd.put_instance("ingestor", "ingestor.b", "10.0.0.2", labels=["dev"],
                      ports={"api": (31002, 5000), "ssh": (32002, 22)})
    etcd.put_instance("ingestor", "ingestor.a", "10.0.0.1", labels=["dev", "eu"],
                      ports={"api": (31001, 5000), "ssh": (32001, 22)},
                      internal_address="172.17.0.11")
    etcd.put_instance("ingestor", "ingestor.c", "10.0.0.3", labels=["prod"],
                      ports={"api": (31003, 5000)})
    etcd.put_instance("db", "db.1", "10.0.0.9", ports={"pg": (35432, 5432)})


def test_the_wheel_alone_is_installed():
    # Imported from site-packages, not from the source tree, with no etcd
    # library for Python around.
    assert "site-packages" in guestutils.__file__
    assert importlib.util.find_spec("etcd3") is None
    assert importlib.util.find_spec("etcd") is None
    assert guestutils.__version__
    here = os.path.dirname(os.path.abspath(__file__))
    pkg_dir = os.path.dirname(guestutils.__file__)
    assert os.path.exists(os.path.join(pkg_dir, "py.typed"))
    assert os.path.exists(os.path.join(pkg_dir, "__init__.pyi"))
    assert not guestutils.__file__.startswith(os.path.dirname(here))


def test_signatures_and_defaults_match_maestro():
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    empty = inspect.Parameter.empty
    assert params(guestutils.get_node_list) == [
        ("service", empty), ("ports", []), ("minimum", 1), ("labels", [])]
    assert params(guestutils.get_port) == [("name", empty), ("default", None)]
    assert params(guestutils.get_specific_port) == [
        ("service", empty), ("container", empty), ("port", empty), ("default", None)]
    assert params(guestutils.get_specific_exposed_port) == [
        ("service", empty), ("container", empty), ("port", empty), ("default", None)]
    assert params(guestutils.get_specific_host) == [
        ("service", empty), ("container", empty)]
    assert params(guestutils.wait_for_nodes)[:3] == [
        ("service", empty), ("minimum", 1), ("timeout", 60.0)]
    for name in ["get_environment_name", "get_service_name", "get_container_name",
                 "get_container_host_address", "get_container_internal_address"]:
        f = getattr(guestutils, name)
        assert params(f) == []
        assert f.__doc__ and f.__doc__.strip()
    assert guestutils.get_node_list.__doc__


def test_exception_types():
    assert MaestroEnvironmentError is GuestUtilsError
    assert issubclass(GuestUtilsError, Exception)
    from guestutils import MaestroEnvironmentError as again
    assert again is GuestUtilsError


#: The lookups answered from the environment alone, in the order
#: ``identity`` returns them.
IDENTITY = [guestutils.get_service_name, guestutils.get_environment_name,
            guestutils.get_container_name, guestutils.get_container_host_address]


def identity(task_env, **variables):
    """What the IDENTITY lookups answer once ``variables`` are set."""
    for name, value in variables.items():
        task_env.setenv(name, value)
    return [lookup() for lookup in IDENTITY]


def test_environment_contract(task_env):
    # mdo's own variables win over a real Marathon's.
    assert identity(
        task_env, SERVICE_NAME="ingestor", SERVICE_GROUP="dev.eu",
        CONTAINER_NAME="ingestor.a", CONTAINER_HOST_ADDRESS="10.0.0.1",
        MESOS_TASK_ID="ignored", HOST="ignored", MARATHON_APP_ID="/ignored/ignored",
    ) == ["ingestor", "dev.eu", "ingestor.a", "10.0.0.1"]


def test_real_marathon_fallbacks(task_env, etcd):
    fleet(etcd)
    task_env.delenv("ETCD_ENDPOINTS")
    assert identity(
        task_env, ETCD_HOST_ADDRESS="127.0.0.1", ETCD_PORT=str(etcd.port),
        MESOS_TASK_ID="ingestor.a", HOST="10.0.0.1", MARATHON_APP_ID="/dev/ingestor",
    ) == ["ingestor", "dev", "ingestor.a", "10.0.0.1"]
    # etcd reached through ETCD_HOST_ADDRESS:ETCD_PORT
    assert guestutils.get_port("api") == 5000
    assert guestutils.get_container_internal_address() == "172.17.0.11"
    task_env.setenv("MARATHON_APP_LABEL_SERVICE_NAME", "db")
    assert guestutils.get_service_name() == "db"


def test_missing_environment_raises(task_env):
    for f in IDENTITY:
        with pytest.raises(MaestroEnvironmentError):
            f()


def test_node_list(task_env, etcd):
    fleet(etcd)
    assert guestutils.get_node_list("ingestor") == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert guestutils.get_node_list("ingestor", ports=["api", "ssh"]) == [
        "10.0.0.1:31001:32001", "10.0.0.2:31002:32002"]
    assert guestutils.get_node_list("ingestor", ["api"], 1, ["dev"]) == [
        "10.0.0.1:31001", "10.0.0.2:31002"]
    assert guestutils.get_node_list("ingestor", ["api"], labels=["dev", "eu"]) == [
        "10.0.0.1:31001"]
    assert guestutils.get_node_list("db", ["pg"]) == ["10.0.0.9:35432"]
    assert guestutils.get_node_list("nobody", minimum=0) == []
    with pytest.raises(GuestUtilsError, match="at least 3"):
        guestutils.get_node_list("ingestor", ["api"], minimum=3, labels=["dev"])
    with pytest.raises(GuestUtilsError):
        guestutils.get_node_list("nobody")
    with pytest.raises(TypeError):
        guestutils.get_node_list("ingestor", "api")  # a string is not a list of ports


def test_reads_are_live(task_env, etcd):
    fleet(etcd)
    assert guestutils.get_node_list("db") == ["10.0.0.9"]
    etcd.put_instance("db", "db.2", "10.0.0.8", ports={"pg": (1, 5432)})
    assert guestutils.get_node_list("db", ["pg"], minimum=2) == [
        "10.0.0.9:35432", "10.0.0.8:1"]
    etcd.delete("/services/db/default/containers/db.1")
    assert guestutils.get_node_list("db") == ["10.0.0.8"]


def test_get_port(task_env, etcd):
    fleet(etcd)
    task_env.setenv("SERVICE_NAME", "ingestor")
    task_env.setenv("CONTAINER_NAME", "ingestor.c")
    task_env.setenv("PORT_API", "31003")
    assert guestutils.get_port("api") == 5000  # the record's exposed port
    assert isinstance(guestutils.get_port("api"), int)
    assert guestutils.get_port("ssh", 2222) == 2222
    assert guestutils.get_port("ssh") is None
    # not registered yet: PORT_<NAME>
    task_env.setenv("CONTAINER_NAME", "ingestor.new")
    task_env.setenv("PORT_HTTP", "8080")
    assert guestutils.get_port("http") == 8080
    assert guestutils.get_port("other", default=7) == 7


def test_specific_lookups(task_env, etcd):
    fleet(etcd)
    assert guestutils.get_specific_host("ingestor", "ingestor.c") == "10.0.0.3"
    assert guestutils.get_specific_port("ingestor", "ingestor.a", "ssh") == 32001
    assert guestutils.get_specific_exposed_port("ingestor", "ingestor.a", "ssh") == 22
    assert guestutils.get_specific_port("ingestor", "ingestor.c", "ssh", 1) == 1
    assert guestutils.get_specific_exposed_port("ingestor", "ingestor.c", "ssh", default=2) == 2
    assert guestutils.get_specific_port("ingestor", "ingestor.c", "ssh") is None
    with pytest.raises(GuestUtilsError, match="not registered"):
        guestutils.get_specific_host("ingestor", "nope")


def test_internal_address(task_env, etcd):
    etcd.put_instance("web", "web.1", "10.0.0.1", internal_address=None)
    etcd.put_instance("web", "web.2", "10.0.0.2", internal_address="172.17.0.5")
    task_env.setenv("SERVICE_NAME", "web")
    task_env.setenv("CONTAINER_NAME", "web.2")
    assert guestutils.get_container_internal_address() == "172.17.0.5"
    task_env.setenv("CONTAINER_NAME", "web.1")
    with pytest.raises(GuestUtilsError):
        guestutils.get_container_internal_address()
    task_env.setenv("CONTAINER_INTERNAL_ADDRESS", "192.168.0.1")
    assert guestutils.get_container_internal_address() == "192.168.0.1"


def test_registry_prefix(task_env, etcd):
    etcd.put_instance("db", "db.1", "10.0.0.9", prefix="/mdo/prod")
    task_env.setenv("REGISTRY_PREFIX", "/mdo/prod")
    assert guestutils.get_node_list("db") == ["10.0.0.9"]


def test_wait_for_nodes_with_the_gil_released(task_env, etcd):
    etcd.put_instance("web", "w1", "10.0.0.1")
    assert guestutils.wait_for_nodes("web", 1, 5) == ["10.0.0.1"]

    result = {}
    started = threading.Event()

    def waiter():
        started.set()
        try:
            result["nodes"] = guestutils.wait_for_nodes("web", minimum=3, timeout=30)
        except Exception as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(10)
    # This thread keeps running Python (and writing to etcd) while the other
    # one waits inside guestutils: the GIL is released there.
    etcd.put_instance("web", "w2", "10.0.0.2")
    etcd.put_instance("web", "w3", "10.0.0.3")
    t.join(40)
    assert not t.is_alive()
    assert result.get("nodes") == ["10.0.0.1", "10.0.0.2", "10.0.0.3"], result

    with pytest.raises(GuestUtilsError, match="timed out"):
        guestutils.wait_for_nodes("web", minimum=5, timeout=0.3)


def test_unreachable_etcd_raises(task_env):
    from conftest import free_port
    task_env.setenv("ETCD_ENDPOINTS", "http://127.0.0.1:%d" % free_port())
    with pytest.raises(GuestUtilsError):
        guestutils.get_node_list("web", minimum=0)

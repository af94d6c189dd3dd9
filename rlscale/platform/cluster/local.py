"""A real multi-node Ray cluster on this one machine, for tests and scaling measurements.

``ray.cluster_utils.Cluster`` starts a head and worker nodes as separate raylets, each with
its own object store, all on 127.0.0.1 with token authentication on: trials, EnvRunners and
Learners placed on different nodes talk through Ray's object transfer as on a real cluster,
only over loopback. (Several ``ray start`` nodes cannot share one host: their raylet sockets
would clash; ``Cluster`` gives each node its own.)
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def local_multinode_cluster(
    worker_nodes: int, cpus_per_worker: float = 1, head_cpus: float = 0
) -> Iterator[str]:
    """Start the cluster, connect this process to it (its address is yielded), and take both
    down afterwards. The head has ``head_cpus`` (0: it holds only this driver)."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
    import ray
    from ray._private import services
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**_node_args(), "num_cpus": head_cpus})
    try:
        for _ in range(worker_nodes):
            cluster.add_node(**_node_args(), num_cpus=cpus_per_worker)
        cluster.wait_for_nodes(timeout=120)
        # Ray rewrites a loopback address to this host's outward IP when the connecting process
        # started no node itself; this cluster listens on loopback only, so keep the address.
        services.resolve_ip_for_localhost = lambda host: host
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1")
        try:
            yield cluster.address
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


def _node_args() -> dict[str, object]:
    """Loopback, and ports of its own: the defaults clash with other nodes on this host."""
    ports = ("dashboard_agent_listen_port", "metrics_export_port", "runtime_env_agent_port")
    return {
        "node_ip_address": "127.0.0.1",
        "include_dashboard": False,
        **{name: _free_port() for name in ports},
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""Test-only replica of the portal: a forward proxy serving tests/fixtures/portal.

See ``tests.replica.server.ReplicaServer`` and ``python -m tests.replica --help``.
"""

from .server import DEFAULT_ROOT, PORTAL_HOSTS, ReplicaServer

__all__ = ["DEFAULT_ROOT", "PORTAL_HOSTS", "ReplicaServer"]

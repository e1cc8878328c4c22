"""``parity deploy``: create the work pools and register the deployments of deployments/prefect.yaml."""

from __future__ import annotations

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY

from .exits import EXIT_OK
from .options import ArchiveOption, RegistryOption


def deploy(registry: RegistryOption = DEFAULT_REGISTRY, archive: ArchiveOption = DEFAULT_ARCHIVE) -> int:
    """Deploy the flows to the configured Prefect server and say how to start a worker.

    Returns
    -------
    int
        ``EXIT_OK``.
    """
    from parity.core.prefect_env import configure

    configure()  # defaults for Prefect itself, set before it is first imported (it freezes them then)
    from parity.deployments.deploy import WORK_POOLS
    from parity.deployments.deploy import deploy as deploy_flows

    output = deploy_flows(registry, archive)
    print(output.strip())
    print(
        f"work pools: {', '.join(WORK_POOLS)}; start a worker with `prefect worker start --pool parity-x86-64`"
    )
    return EXIT_OK

"""Container networking: bridges, veth pairs, named namespaces, IPAM, nftables, /etc files.

A container on a bridge network gets a *network namespace* of its own, made before the container
starts, at ``/run/netns/portside-<id12>``; the OCI runtime joins it by path. Inside is ``lo`` and one
``eth<N>`` per network, the inner end of a veth pair whose outer end is plugged into the network's
Linux bridge on the host. The bridge holds the network's gateway address; nftables (one table of
our own, ``inet portside``) masquerades traffic leaving the host and DNATs published ports in.

Modules, one concept each:

- :mod:`.ports`   the ``-p``/``-P`` grammar, host-port reservation, Docker's PORTS column
- :mod:`.ipam`    subnet choice and address leases (SQLite)
- :mod:`.netns`   named namespaces made and entered from worker threads (no fork)
- :mod:`.bridge`  bridges and veth pairs over netlink (pyroute2)
- :mod:`.nft`     the ``inet portside`` table
- :mod:`.files`   ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf``
- :mod:`.manager` :class:`NetworkManager`, the entry point that ties them together

Importing this package is cheap: pyroute2 loads only when the manager is first used, so commands
like ``ps`` that merely format ports do not pay for it.
"""

from __future__ import annotations


from .ports import PortSpec, format_ports, parse_publish, publish_all

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


__all__ = ["Attachment", "NetworkManager", "PortSpec", "format_ports", "parse_publish",
           "publish_all"]


def __getattr__(name: str) -> Any:
    if name in ("NetworkManager", "Attachment"):
        from . import manager

        return getattr(manager, name)
    raise AttributeError(name)

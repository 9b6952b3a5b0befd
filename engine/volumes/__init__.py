"""Volumes: named, anonymous and bind mounts for containers (``-v``, ``--mount``, ``--tmpfs``,
``--volumes-from``, image ``VOLUME`` seeding).

* :mod:`.specs` parses the flags exactly as Docker does (pure, no file system access);
* :mod:`.manager` keeps volume records and data, and turns a container's flags into Docker
  ``Mounts`` entries with their OCI runtime mounts;
* :mod:`.seed` copies an image's content into a new volume without leaving the root filesystem.

The user-facing model (``engine.volumes``) is :mod:`portside.engine.models.volumes`.
"""

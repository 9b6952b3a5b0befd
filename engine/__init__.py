"""portside.engine: the container engine (store, images, containers, volumes, networks, builds).

Nothing here imports Jupyter. The public entry point is :class:`portside.engine.api.Engine`.
"""

__version__ = "0.1.0"

"""portside.kernel: the notebook front (``%container`` magics) on top of the engine API."""


def load_ipython_extension(ipython):
    """Register the magics once: the "Python 3 (portside)" kernel calls this as it starts
    (without marking the extension loaded, so a notebook's own ``%load_ext portside`` stays
    silent instead of saying "already loaded"), and a second call keeps the running magics,
    their container sessions included."""
    from portside.kernel.magics import ContainerMagics

    if "ContainerMagics" in ipython.magics_manager.registry:
        return
    ipython.register_magics(ContainerMagics)


def unload_ipython_extension(ipython):  # pragma: no cover - IPython has no unregister
    pass

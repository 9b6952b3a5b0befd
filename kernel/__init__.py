"""portside.kernel: the notebook front (``%container`` magics) on top of the engine API."""


def load_ipython_extension(ipython):
    from portside.kernel.magics import ContainerMagics

    ipython.register_magics(ContainerMagics)


def unload_ipython_extension(ipython):  # pragma: no cover - IPython has no unregister
    pass

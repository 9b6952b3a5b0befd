"""portside: a daemonless container engine in Python, fronted by Jupyter.

``%load_ext portside`` registers the ``%container`` magics (see :mod:`portside.kernel`).
"""

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    from portside.kernel import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):
    from portside.kernel import unload_ipython_extension as _unload

    _unload(ipython)

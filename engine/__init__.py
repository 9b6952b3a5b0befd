"""portside.engine: the container engine (store, images, containers, volumes, networks, builds).

Nothing here imports Jupyter. The public entry point is :func:`portside.engine.api.from_env`, whose
engine object answers the model API (:mod:`portside.engine.models.interface`).

Every ``portside`` command is a new process, so what a module imports at run time is paid on each
command line. Modules therefore import :mod:`typing` only for annotations, under a local
``TYPE_CHECKING = False`` (type checkers treat it as true; importing ``typing`` costs ~3 ms), and
define their data classes with :func:`portside.engine.records.record` rather than
``@dataclass`` (see that module).
"""

__version__ = "0.1.0"

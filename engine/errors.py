"""One error tree for the whole engine.

Every failure the engine reports is an :class:`EngineError`; callers (CLI, magics, REST handlers)
catch that one class and show ``str(exc)``, a single line that names the thing at fault::

    EngineError                 exit 125, HTTP 500
    ├── NotFound                "No such container: exp1"                    HTTP 404
    ├── AlreadyExists           "image tag already exists: exp:1"            HTTP 409
    ├── InvalidArgument         "invalid reference format: Exp:1"            HTTP 400
    │   ├── DockerfileError     "Dockerfile:3: COPY requires at least two arguments"
    │   └── GPUError            "--gpus: no NVIDIA device: /dev/nvidiactl is missing"
    ├── IncorrectState          "container exp is not running"               HTTP 409
    ├── Conflict                "image is in use by container 1a2b3c"         HTTP 409
    ├── CorruptStore            "blob sha256:… does not match its digest"
    ├── RuntimeFailure          the OCI runtime, a mount or a namespace failed
    ├── RegistryError           the distribution protocol failed (HTTP status kept)
    │   └── Unauthorized        "unauthorized: authentication required"
    ├── SchedulerError          "Slurm refused the job: Invalid partition name specified"
    ├── BuildError              a build step failed (step and exit code kept)
    ├── Unavailable             the engine behind a context cannot be reached    HTTP 503
    │                           "Cannot connect to the Docker daemon at unix:///… (context "gpu")"
    └── Unsupported             an operation the context's engine does not have  HTTP 501
                                "system check is not available in context "gpu" (a Docker Engine)"

Foreign exceptions are mapped at the boundary with ``raise Mine(msg) from exc`` so the cause stays
available for debugging while the message stays one line.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    #: CLI exit status for this error (Docker uses 125 for every engine error).
    exit_code = 125
    #: HTTP status for the REST API.
    http_status = 500

    def __init__(self, message: str = "", *args) -> None:
        super().__init__(message, *args)
        self.message = " ".join(str(message).split("\n")) if message else self.__class__.__name__

    def __str__(self) -> str:
        return self.message


class NotFound(EngineError):
    """The named object (image, container, volume, network, blob, file) does not exist."""

    http_status = 404


class AlreadyExists(EngineError):
    """An object with that name already exists."""

    http_status = 409


class InvalidArgument(EngineError):
    """Bad input from the user: a flag, a reference, a file, a value."""

    http_status = 400


class DockerfileError(InvalidArgument):
    """A Dockerfile could not be parsed; carries the line range of the offending instruction."""

    def __init__(self, message: str, start_line: int | None = None, end_line: int | None = None,
                 filename: str = "Dockerfile") -> None:
        self.start_line = start_line
        self.end_line = end_line if end_line is not None else start_line
        self.filename = filename
        self.detail = message
        if start_line is not None:
            message = f"{filename}:{start_line}: {message}"
        super().__init__(message)


class GPUError(InvalidArgument):
    """A ``--gpus`` or ``--device`` request that cannot be met on this host."""


class IncorrectState(EngineError):
    """The object exists but is in the wrong state for the operation (e.g. not running)."""

    http_status = 409


class Conflict(EngineError):
    """The operation would break something else (an image in use, a port already taken)."""

    http_status = 409


class CorruptStore(EngineError):
    """The store holds something that does not match its record; ``system check`` reports it."""


class RuntimeFailure(EngineError):
    """The OCI runtime, a mount, a namespace or another kernel facility failed."""


class RegistryError(EngineError):
    """A registry answered with an error or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unauthorized(RegistryError):
    """The registry refused the credentials (or asked for some)."""

    http_status = 401


class SchedulerError(EngineError):
    """A cluster scheduler (Slurm) refused or could not run a job; the message carries the
    scheduler's own reason (from ``sbatch`` or ``squeue``)."""

    http_status = 503


class BuildError(EngineError):
    """A build step failed; ``step`` and ``exit_code_of_step`` say which and how."""

    def __init__(self, message: str, step: str | None = None, status: int | None = None,
                 output_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.status = status
        self.output_tail = output_tail or []


class Unavailable(EngineError):
    """The engine a context names cannot be reached: its daemon is down, its socket refuses
    this user, the SSH connection failed. The message names the endpoint and the context."""

    http_status = 503


class Unsupported(EngineError):
    """The context's engine has no such operation (what only portside's own engine does, in a
    Docker context). Never answered by another engine instead: the message names the context."""

    http_status = 501


class ContainerExit(EngineError):
    """Not an error of the engine: the container ran and exited non-zero (``run`` passes it on)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or f"container exited with status {status}")
        self.exit_code = status


class CannotInvoke(EngineError):
    """The container's command exists but cannot be run (Docker's exit 126)."""

    exit_code = 126


class CommandNotFound(EngineError):
    """The container's command does not exist (Docker's exit 127)."""

    exit_code = 127

"""A process's standard streams as the model API hands them out (``exec_run(socket=True)``).

:class:`ProcessStream` is the local engine's :class:`~portside.engine.models.interface.ExecStream`:
the three pipes of a process the runtime started in a container, plus ``wait``/``poll``/``kill``
/``signal``/``close``. A caller (the notebook's agent session) reads and writes the streams
and never sees how the process was started; an engine behind a socket hands out another object
with the same shape.
"""

from __future__ import annotations

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import subprocess

    from .interface import BinaryStream


class ProcessStream:
    """The streams and the exit status of one process (see the module's docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        # a stream the caller did not ask for (stdin without ``stdin=True``) is None
        self.stdin: BinaryStream = proc.stdin  # type: ignore[assignment]
        self.stdout: BinaryStream = proc.stdout  # type: ignore[assignment]
        self.stderr: BinaryStream = proc.stderr  # type: ignore[assignment]

    @property
    def pid(self) -> int:
        """The process id on this machine (what a proxy on the same host can signal)."""
        return self._proc.pid

    def poll(self) -> int | None:
        """The exit status once the process has ended, else None."""
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Block until it ends; its exit status (126/127: the command cannot run or is missing).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        import subprocess

        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the process did not end in {timeout:g} s") from None

    def kill(self) -> None:
        """SIGKILL the process (nothing when it has ended)."""
        if self._proc.poll() is None:
            try:
                self._proc.kill()
            except OSError:
                pass

    def signal(self, signum: int) -> None:
        """Send it ``signum`` (nothing when it has ended)."""
        if self._proc.poll() is None:
            try:
                self._proc.send_signal(signum)
            except OSError:
                pass

    def close(self) -> None:
        """Close the streams and reap the process, killing it if it outlives 5 seconds."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            self.wait(5)
        except TimeoutError:
            self.kill()
            self._proc.wait()

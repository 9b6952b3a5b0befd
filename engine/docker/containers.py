"""Containers of a Docker Engine, answering the model API
(:mod:`portside.engine.models.interface`).

``attrs`` is dockerd's ``container inspect`` document (or, from ``list(sparse=True)``, its
``/containers/json`` summary); the verbs are dockerd's. The foreground verbs (``run_from``,
``start_attached``, ``attach``) use dockerd's attach stream, so standard input (``-i``),
terminals (``-t``) and detach keys work as with Docker's CLI; ``exec_run(socket=True)`` hands
out an :class:`~.streams.ExecProcess` (the model API's ``ExecStream``); ``cp`` follows Docker's
placement rules through dockerd's archive endpoint (:mod:`.copying`).
"""

from __future__ import annotations

import contextlib
import time

from ..errors import ContainerExit, EngineError, IncorrectState, InvalidArgument, NotFound
from ..models.resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, BinaryIO, Callable, Iterator, Literal, Mapping, Sequence, overload

    from .images import Image
    from .streams import ExecProcess

#: HostConfig keys that are portside's own bookkeeping and that dockerd does not know.
_PORTSIDE_ONLY = ("Gpus", "GpusOptional", "Warnings")
#: Seconds a foreground container may still show as running after its output ended, before a
#: caller that could have typed the detach keys counts as detached.
_DETACH_GRACE = 2.0


class Container(Model):
    """One container of the Docker Engine; ``attrs`` is dockerd's inspect document (or its
    ``/containers/json`` summary, from ``list(sparse=True)``)."""

    collection: ContainerCollection

    @property
    def name(self) -> str:
        if "Name" in self.attrs:
            return self.attrs["Name"].lstrip("/")
        return (self.attrs.get("Names") or ["/"])[0].lstrip("/")

    @property
    def status(self) -> str:
        state = self.attrs["State"]
        return state["Status"] if isinstance(state, dict) else state

    @property
    def labels(self) -> dict[str, str]:
        if "Config" in self.attrs:
            return self.attrs["Config"].get("Labels") or {}
        return self.attrs.get("Labels") or {}

    @property
    def image(self) -> Image:
        return self.collection.engine.images.get(self.attrs.get("ImageID")
                                                 or self.attrs["Image"])

    @property
    def api(self):
        return self.collection.engine.api

    @property
    def engine(self):
        return self.collection.engine

    def reload(self) -> None:
        self.attrs = self.api.inspect_container(self.id)

    def _done(self) -> Container:
        self.reload()
        return self

    def _config(self) -> dict[str, Any]:
        if "Config" not in self.attrs:  # a summary: the inspect document has the settings
            self.reload()
        return self.attrs["Config"]

    # ---- verbs ----------------------------------------------------------------------------
    def start(self) -> Container:
        self.api.start(self.id)
        return self._done()

    def stop(self, timeout: int | None = None, signal: str | int | None = None) -> Container:
        """dockerd's stop (its ``StopSignal``, then SIGKILL after ``timeout`` seconds). With
        ``signal`` (``stop -s``), which dockerd's API takes from version 1.42 only: that
        signal, then dockerd's stop once ``timeout`` (default: the container's
        ``StopTimeout``, else 10) has passed."""
        if signal is None:
            self.api.stop(self.id, timeout=timeout)
            return self._done()
        self.reload()
        if self.status not in ("running", "paused", "restarting"):
            return self
        wait = timeout if timeout is not None else (self._config().get("StopTimeout") or 10)
        with contextlib.suppress(IncorrectState):
            self.api.kill(self.id, signal=signal)
        deadline = time.monotonic() + max(float(wait), 0)
        while time.monotonic() < deadline:
            self.reload()
            if self.status not in ("running", "paused", "restarting"):
                break
            time.sleep(0.05)
        # marks it stopped by the user (no restart policy brings it back); SIGKILL if needed
        self.api.stop(self.id, timeout=0)
        return self._done()

    def restart(self, timeout: int | None = None) -> Container:
        self.api.restart(self.id, timeout=10 if timeout is None else timeout)
        return self._done()

    def kill(self, signal: str | int = "KILL") -> Container:
        self.api.kill(self.id, signal=signal)
        return self._done()

    def update(self, *, mem_limit: int | str | None = None,
               memswap_limit: int | str | None = None, cpu_shares: int | None = None,
               nano_cpus: int | None = None, pids_limit: int | None = None,
               restart_policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """dockerd's ``POST /containers/{id}/update`` with the API's own keys (the SDK's
        ``update_container`` has no ``NanoCpus`` or ``PidsLimit``); dockerd checks and applies
        them. Returns ``{"Warnings": [...]}``."""
        from ..units import parse_size
        from .errors import guarded_call

        def size(value: int | str) -> int:
            if isinstance(value, int):
                return value
            return -1 if value.strip() == "-1" else parse_size(value)

        body: dict[str, Any] = {}
        for key, value in (("Memory", mem_limit), ("MemorySwap", memswap_limit)):
            if value is not None:
                body[key] = size(value)
        for key, number in (("CpuShares", cpu_shares), ("NanoCpus", nano_cpus),
                            ("PidsLimit", pids_limit)):
            if number is not None:
                body[key] = int(number)
        if restart_policy is not None:
            body["RestartPolicy"] = dict(restart_policy)
        client = self.engine.client
        result = guarded_call(self.engine, lambda: client._result(client._post_json(
            client._url("/containers/{0}/update", self.id), data=body), True))
        self.reload()
        return {"Warnings": list((result or {}).get("Warnings") or [])}

    def pause(self) -> Container:
        self.api.pause(self.id)
        return self._done()

    def unpause(self) -> Container:
        self.api.unpause(self.id)
        return self._done()

    def wait(self, timeout: float | None = None, condition: str | None = None
             ) -> dict[str, Any]:
        """Block until it stops; returns ``{"StatusCode": n, "Error": None}``. ``condition``:
        dockerd's ``not-running`` (default), ``next-exit`` or ``removed``."""
        from .errors import guarded_call

        engine = self.engine
        try:
            result = guarded_call(engine, lambda: engine.client.wait(
                self.id, timeout=timeout, condition=condition))
        except EngineError as exc:
            if timeout is not None and "did not answer" in str(exc):
                raise IncorrectState(f"container {self.name} did not stop within "
                                     f"{timeout:g} s") from None
            raise
        error = result.get("Error") or None
        return {"StatusCode": int(result.get("StatusCode", 0)),
                "Error": error.get("Message") if isinstance(error, dict) else error}

    def wait_later(self, condition: str = "next-exit") -> Callable[[], int]:
        """Register a wait with dockerd now and return a function that blocks for the status
        (its ``close`` attribute gives the wait up).

        dockerd answers a wait's headers as soon as the wait is registered, so once this
        returns, an exit (or, with ``removed``, the removal of an ``--rm`` container) that
        follows a start cannot be missed, as Docker's CLI waits around ``run``."""
        import json

        from .errors import guarded_call

        engine = self.engine
        client = engine.client

        def request():
            res = client._post(client._url("/containers/{0}/wait", self.id),
                               params={"condition": condition}, stream=True, timeout=None)
            client._raise_for_status(res)
            return res

        res = guarded_call(engine, request)

        def status() -> int:
            try:
                doc = guarded_call(engine, lambda: json.loads(res.raw.read() or b"{}"))
            finally:
                res.close()
            error = (doc.get("Error") or {}).get("Message") if isinstance(doc.get("Error"),
                                                                          dict) else None
            if "StatusCode" not in doc:
                from ..errors import RuntimeFailure

                raise RuntimeFailure(error or f"dockerd did not say how {self.name} exited")
            return int(doc["StatusCode"])

        status.close = res.close  # type: ignore[attr-defined]
        return status

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.api.remove_container(self.id, v=v, force=force)

    def rename(self, name: str) -> None:
        self.api.rename(self.id, name)
        self.reload()

    if TYPE_CHECKING:
        @overload
        def logs(self, *, stdout: bool = True, stderr: bool = True, stream: Literal[True],
                 timestamps: bool = False, tail: int | str | None = None,
                 since: float | str | None = None, until: float | str | None = None,
                 follow: bool = False, stop: Callable[[], bool] | None = None
                 ) -> Iterator[tuple[str, bytes]]: ...

        @overload
        def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
                 timestamps: bool = False, tail: int | str | None = None,
                 since: float | str | None = None, until: float | str | None = None,
                 follow: bool = False, stop: Callable[[], bool] | None = None
                 ) -> bytes | Iterator[tuple[str, bytes]]: ...

    def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: int | str | None = None,
             since: float | str | None = None, until: float | str | None = None,
             follow: bool = False, stop: Callable[[], bool] | None = None
             ) -> bytes | Iterator[tuple[str, bytes]]:
        """The container's output (dockerd's log driver must be readable: json-file, local).

        ``stream``/``follow`` give an iterator of (stream, bytes); ``stop`` (a callable) ends
        a follow early, e.g. when the reader has gone away. ``since``/``until``: unix times or
        Docker's text forms (``10m``, an RFC 3339 time)."""
        from ..models.containers import parse_time_arg

        if tail in (None, "all", "-1", -1):
            tail_text = "all"
        else:
            try:
                tail_text = str(int(tail))  # type: ignore[arg-type]
            except ValueError:
                raise InvalidArgument(f"invalid --tail value: {tail}") from None
        params: dict[str, Any] = {"stdout": int(stdout), "stderr": int(stderr),
                                  "timestamps": int(timestamps), "follow": int(follow),
                                  "tail": tail_text}
        since_t, until_t = parse_time_arg(since), parse_time_arg(until)
        if since_t is not None:
            params["since"] = f"{since_t:.9f}"
        if until_t is not None:
            params["until"] = f"{until_t:.9f}"
        frames = self._stream(f"/containers/{self.id}/logs", params, stop=stop)
        if stream or follow:
            return frames
        return b"".join(data for _s, data in frames)

    def _stream(self, path: str, params: dict, stop: Any = None, method: str = "get"
                ) -> Iterator[tuple[str, bytes]]:
        """A multiplexed (or, with a TTY, raw) output stream as (stream, bytes) items."""
        from .errors import guarded_call, guarded_stream

        engine = self.engine
        client = engine.client
        tty = bool(self._config().get("Tty"))

        def request():
            res = getattr(client, "_" + method)(client._url(path), params=params, stream=True,
                                                 timeout=None)
            client._raise_for_status(res)
            return res

        res = guarded_call(engine, request)
        stopped = None
        if stop is not None:
            from .streams import close_when

            stopped = close_when(stop, res)

        def frames():
            raw = res.raw
            try:
                while True:
                    if tty:
                        data = raw.read1(65536) if hasattr(raw, "read1") else raw.read(4096)
                        if not data:
                            return
                        yield "stdout", data
                        continue
                    header = raw.read(8)
                    if not header or len(header) < 8:
                        return
                    size = int.from_bytes(header[4:8], "big")
                    data = raw.read(size) if size else b""
                    if size and not data:
                        return
                    yield ("stderr" if header[0] == 2 else "stdout"), data
            except Exception:  # noqa: BLE001 - a stream cut by ``stop`` ends quietly
                if stopped is None or not stopped.is_set():
                    raise
            finally:
                res.close()

        return guarded_stream(engine, frames())

    def attach(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
               stderr: BinaryIO | None = None, *, detach_keys: str | None = None,
               tty_size: tuple[int, int] | None = None) -> int | None:
        """``docker attach``: its output from now on to ``stdout``/``stderr``, ``stdin`` fed to
        it when it keeps standard input open; the exit status, or None after detaching.

        Raises:
            IncorrectState: it is not running.
        """
        self.reload()
        if self.status != "running":
            raise IncorrectState("You cannot attach to a stopped container, start it first")
        return self.collection._foreground(self, stdin, stdout, stderr, start=False,
                                           detach_keys=detach_keys, tty_size=tty_size)

    def attach_socket(self, *, stdin: bool = True, stdout: bool = True, stderr: bool = True,
                      logs: bool = False, detach_keys: str | None = None):
        """A hijacked attach connection (:class:`~.streams.Hijacked`): ``send`` is its stdin,
        ``frames(tty)`` its output."""
        from .streams import hijack

        params: dict[str, Any] = {"stream": 1, "stdin": int(stdin), "stdout": int(stdout),
                                  "stderr": int(stderr), "logs": int(logs)}
        if detach_keys:
            params["detachKeys"] = detach_keys
        return hijack(self.engine, f"/containers/{self.id}/attach", None, params)

    def top(self, ps_args: str = "") -> dict[str, Any]:
        """Docker's ``top``: ``{"Titles": [...], "Processes": [[...], ...]}``."""
        return self.api.top(self.id, ps_args=ps_args or None)

    def stats(self) -> dict[str, Any]:
        """One sample of dockerd's stats document (memory, cpu, pids, network, block I/O)."""
        doc = dict(self.api.stats(self.id, stream=False))
        doc.setdefault("name", "/" + self.name)
        doc.setdefault("id", self.id)
        return doc

    def exec_run(self, cmd: str | Sequence[str], *, stdout: bool = True, stderr: bool = True,
                 stdin: bool = False, tty: bool = False, detach: bool = False,
                 socket: bool = False,
                 environment: Sequence[str] | Mapping[str, str] | None = None,
                 workdir: str | None = None, user: str = "", privileged: bool = False
                 ) -> tuple[int | None, bytes | ExecProcess]:
        """Run a command in the container (docker-py's shape): ``(exit status, output)``;
        with ``detach`` ``(None, b"")``; with ``socket`` ``(None, ExecProcess)``, the model
        API's ``ExecStream`` (its ``stdin`` open when ``stdin`` is asked for)."""
        import shlex

        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        env = _env_list(environment) or None
        if socket:
            from .streams import DEVNULL, PIPE, ExecProcess

            return None, ExecProcess(self, argv, user=user or None, workdir=workdir or None,
                                     env=env, tty=tty, stdin=PIPE if stdin else DEVNULL,
                                     stdout=PIPE, stderr=PIPE, privileged=privileged)
        created = self.api.exec_create(self.id, argv, stdout=stdout, stderr=stderr, tty=tty,
                                       environment=env, workdir=workdir or None,
                                       user=user or "", privileged=privileged)
        if detach:
            self.api.exec_start(created["Id"], detach=True)
            return None, b""
        from .streams import hijack

        conn = hijack(self.engine, f"/exec/{created['Id']}/start",
                      {"Detach": False, "Tty": tty})
        try:
            out = b"".join(data for _s, data in conn.frames(tty))
        finally:
            conn.close()
        code = None
        for _ in range(500):
            doc = self.api.exec_inspect(created["Id"])
            if not doc.get("Running"):
                code = doc.get("ExitCode")
                break
            time.sleep(0.01)
        return code, out

    def exec_attached(self, cmd: Sequence[str], stdin: BinaryIO | None, stdout: BinaryIO,
                      stderr: BinaryIO, *, tty: bool = False,
                      environment: Sequence[str] | None = None, workdir: str = "",
                      user: str = "", detach: bool = False, privileged: bool = False) -> int:
        """``docker exec``: the command with the caller's streams as its standard streams
        (``tty``: one stream through a terminal, as dockerd gives it); its exit status (126/127
        when it cannot run), with ``detach`` 0 once it started. An interrupt is passed on to
        the command (SIGINT) and raised again."""
        import signal
        import threading

        if not cmd:
            raise InvalidArgument("exec requires at least 2 arguments")
        if detach:
            self.exec_run(list(cmd), detach=True, environment=environment,
                          workdir=workdir or None, user=user, tty=tty, privileged=privileged)
            return 0
        _code, proc = self.exec_run(list(cmd), stdin=stdin is not None, socket=True, tty=tty,
                                    environment=environment, workdir=workdir or None,
                                    user=user, privileged=privileged)
        assert not isinstance(proc, bytes)  # (socket=True)
        pumps = [threading.Thread(target=_copy, args=(proc.stdout, stdout), daemon=True),
                 threading.Thread(target=_copy, args=(proc.stderr, stderr), daemon=True)]
        if stdin is not None:
            pumps.append(threading.Thread(target=_feed, args=(stdin, proc.stdin), daemon=True))
        for t in pumps:
            t.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.signal(signal.SIGINT)
            raise
        for t in pumps[:2]:
            t.join()
        proc.close()
        return code

    def commit(self, repository: str | None = None, tag: str | None = None, *,
               message: str = "", author: str = "", changes: Sequence[str] | str = (),
               pause: bool = True) -> Image:
        repo, tag = _split_ref(repository, tag)
        changes_list = [changes] if isinstance(changes, str) else list(changes)
        result = self.api.commit(self.id, repository=repo, tag=tag, message=message or None,
                                 author=author or None, changes=changes_list or None,
                                 pause=pause)
        return self.engine.images.get(result["Id"])

    def diff(self) -> list[dict[str, Any]]:
        """``[{"Path": p, "Kind": 0|1|2}]`` (0 changed, 1 added, 2 deleted)."""
        return list(self.api.diff(self.id) or [])

    def export(self, out: BinaryIO) -> None:
        from .streams import copy_stream

        copy_stream(self.api.export(self.id, chunk_size=1 << 20), out)

    def get_archive(self, path: str, out: BinaryIO, *, follow_links: bool = False
                    ) -> dict[str, Any]:
        """Write a tar of ``path`` to ``out``; returns Docker's stat (name, size, mode, …).

        ``follow_links``: a symbolic link at ``path`` is followed (``cp -L``), as Docker's CLI
        follows it: dockerd's stat names the link's target, which is archived instead (the
        archive and the stat returned name the target)."""
        import posixpath

        from .streams import copy_stream

        path = _absolute(path)
        if follow_links:
            for _ in range(40):  # ELOOP's limit
                stat = self.stat(path)
                target = (stat or {}).get("linkTarget")
                if not target:
                    break
                path = target if target.startswith("/") else \
                    posixpath.normpath(posixpath.join(posixpath.dirname(path), target))

        chunks, stat = self.api.get_archive(self.id, path, chunk_size=1 << 20)
        copy_stream(chunks, out)
        return stat

    def stat(self, path: str) -> dict[str, Any] | None:
        """Docker's stat of ``path`` in the container (name, size, mode with Go's mode bits,
        mtime, linkTarget), or None when nothing is there."""
        import base64
        import json

        from .errors import guarded_call

        engine = self.engine
        client = engine.client

        def head():
            res = client.head(client._url("/containers/{0}/archive", self.id),
                              params={"path": _absolute(path)}, timeout=engine.timeout)
            if res.status_code == 404:  # the container exists (it was looked up): the path not
                return None
            client._raise_for_status(res)
            return res.headers.get("X-Docker-Container-Path-Stat")

        header = guarded_call(engine, head)
        return json.loads(base64.b64decode(header)) if header else None

    def put_archive(self, path: str, data: BinaryIO | bytes) -> bool:
        """Extract a tar (bytes or a stream) into the container folder ``path``."""
        body = data if isinstance(data, (bytes, bytearray)) else _chunks(data)
        return bool(self.api.put_archive(self.id, _absolute(path), body))

    def copy_out(self, src: str, dest: str, *, archive: bool = False,
                 follow_links: bool = False) -> None:
        """``cp [-L] CONTAINER:SRC DEST`` with Docker's placement rules (see
        :func:`.copying.copy_out`)."""
        from .copying import copy_out

        copy_out(self, _absolute(src), dest, archive=archive, follow=follow_links)

    def copy_in(self, src: str, dest: str, *, follow_links: bool = False) -> None:
        """``cp [-L] SRC CONTAINER:DEST`` with Docker's placement rules (see
        :func:`.copying.copy_in`)."""
        from .copying import copy_in

        copy_in(self, src, _absolute(dest), follow=follow_links)

    def ports(self) -> dict[str, list[dict[str, str]]]:
        """``{"80/tcp": [{"HostIp", "HostPort"}]}``: the bindings in force while it runs, else
        those it asked for."""
        from ..models.composed import ports

        if "HostConfig" not in self.attrs or "Config" not in self.attrs:
            self.reload()
        return ports(self.attrs)


def _absolute(path: str) -> str:
    """A path in the container as dockerd takes it (relative ones start at ``/``)."""
    return path if path.startswith("/") else "/" + path


def _split_ref(repository: str | None, tag: str | None) -> tuple[str | None, str | None]:
    if repository and tag is None:
        last = repository.rsplit("/", 1)[-1]
        if ":" in last and "@" not in repository:
            repository, _, tag = repository.rpartition(":")
    return repository, tag


def _env_list(env: Sequence[str] | Mapping[str, str] | None) -> list[str]:
    if env is None:
        return []
    if isinstance(env, dict):
        return [f"{k}={v}" for k, v in env.items()]
    return list(env)


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        data = f.read(size)
        if not data:
            return
        yield data


def _copy(source: Any, target: Any) -> None:
    """An exec's output pipe to the caller's stream, as it comes."""
    try:
        for chunk in iter(lambda: source.read1(65536), b""):
            target.write(chunk)
            target.flush()
    except (OSError, ValueError):
        pass


def _feed(source: Any, target: Any) -> None:
    """The caller's stream into an exec's standard input, then its end."""
    read = getattr(source, "read1", None) or source.read
    try:
        for chunk in iter(lambda: read(65536), b""):
            target.write(chunk)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            target.close()


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """dockerd's ``/containers/json`` entry as ``list(sparse=True)`` gives it: the fields the
    listing reads (``Path``/``Args``: dockerd's ``Command`` text as it shows it; ``GPUs``:
    none known from a summary)."""
    doc = dict(row)
    doc.setdefault("Path", row.get("Command") or "")
    doc.setdefault("Args", [])
    doc.setdefault("GPUs", [])
    return doc


def _refuse_lock(engine: Any, locked: bool | None) -> None:
    """The lock (``portside.lock``, ``--locked``) pins images of portside's own engine: under
    it a Docker context refuses, rather than run what the lock did not pin."""
    from ..lock import in_force

    if locked or (locked is None and in_force() is not None):
        raise engine.unsupported("the lock (--locked, portside.lock)",
                                 "it pins images of the default context")


class ContainerCollection(Collection):
    """``engine.containers`` of a Docker context."""

    model = Container

    @property
    def api(self):
        return self.engine.api

    def get(self, name: str, *, size: bool = False) -> Container:
        """The container with that name, id or id prefix (``size``: with ``SizeRw`` and
        ``SizeRootFs``). Raises NotFound."""
        if not size:
            return Container(self.api.inspect_container(name), self)
        from .errors import guarded_call

        client = self.engine.client
        doc = guarded_call(self.engine, lambda: client._result(client._get(
            client._url("/containers/{0}/json", name), params={"size": 1}), True))
        return Container(doc, self)

    def list(self, *, all: bool = False, filters: Mapping[str, builtins.list[str]] | None = None,
             limit: int | None = None, sparse: bool = False, size: bool = False
             ) -> builtins.list[Container]:
        """Containers, newest first (dockerd's order and filters); ``sparse``: each with
        dockerd's summary as ``attrs`` (what ``ps`` shows; ``size`` adds ``SizeRw``)."""
        rows = self.api.containers(all=all, filters=dict(filters) if filters else None,
                                   limit=-1 if limit is None else limit, size=size)
        if sparse:
            return [Container(_summary(row), self) for row in rows]
        out = []
        for row in rows:
            try:
                out.append(self.get(row["Id"], size=size))
            except NotFound:
                continue  # removed between the listing and its inspection
        return out

    def create_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                    name: str | None = None, locked: bool | None = None, pull: bool = True,
                    progress: Callable[[Any], None] | None = None) -> Container:
        """Create from Docker's ``Config`` and ``HostConfig`` documents (what ``run``'s flags
        make). A missing image is pulled first, as ``docker run`` does (``pull=False``: not).

        Raises:
            Unsupported: under the lock (``locked``, or ``locked = true`` in portside.lock).
        """
        _refuse_lock(self.engine, locked)
        body = dict(config)
        body["HostConfig"] = self._host_config(dict(host_config))
        self.engine.client  # noqa: B018 - connects (and fails) before the body is built
        try:
            created = self.api.create_container_from_config(body, name=name)
        except NotFound as exc:
            if not pull or "image" not in str(exc).lower():
                raise
            self.engine.images.pull(config["Image"], progress=progress)
            created = self.api.create_container_from_config(body, name=name)
        container = self.get(created["Id"])
        warnings = created.get("Warnings") or []
        if warnings:
            container.attrs.setdefault("HostConfig", {})["Warnings"] = list(warnings)
        return container

    def _host_config(self, hc: dict) -> dict:
        """Our HostConfig as dockerd takes it: ``--mount`` text parsed, ``--gpus`` as a device
        request, portside's keys out."""
        out = {k: v for k, v in hc.items() if k not in _PORTSIDE_ONLY and v is not None}
        if hc.get("CDIDevices"):
            raise self.engine.unsupported("CDI devices (--device vendor/class=name)",
                                          "use --gpus or a device path")
        out.pop("CDIDevices", None)
        if hc.get("Gpus") and not out.get("DeviceRequests"):
            out["DeviceRequests"] = [_gpu_request(hc["Gpus"])]
        mounts = out.get("Mounts")
        if mounts and isinstance(mounts[0], str):
            out["Mounts"] = [_mount_doc(m) for m in mounts]
        if out.get("NetworkMode") in ("default", ""):
            out["NetworkMode"] = "default"
        return out

    def create(self, image: str, command: str | Sequence[str] | None = None,
               **kwargs: Any) -> Container:
        """docker-py's ``containers.create`` (the same keywords as the embedded engine's)."""
        from ..models.containers import docker_py_kwargs

        locked = kwargs.pop("locked", None)
        config, host_config, name = docker_py_kwargs(image, command, kwargs)
        return self.create_from(config, host_config, name=name, locked=locked)

    def run(self, image: str, command: str | Sequence[str] | None = None, *,
            detach: bool = False, remove: bool = False, stdout: bool = True,
            stderr: bool = False, **kwargs: Any) -> Container | bytes:
        """docker-py's ``containers.run``: with ``detach`` the running Container; otherwise its
        output once it exits.

        Raises:
            ContainerExit: it exited non-zero (the status is the exception's ``exit_code``).
        """
        container = self.create(image, command, auto_remove=remove and detach, **kwargs)
        try:
            container.start()
        except EngineError:
            if remove:
                with contextlib.suppress(EngineError):
                    container.remove(force=True)
            raise
        if detach:
            return container
        code = container.wait()["StatusCode"]
        out = container.logs(stdout=stdout, stderr=stderr)
        assert isinstance(out, bytes)
        if remove:
            container.remove(force=True)
        if code != 0:
            raise ContainerExit(code, f"container {container.name} exited with {code}: "
                                      f"{out[-200:].decode(errors='replace').strip()}")
        return out

    if TYPE_CHECKING:
        @overload
        def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                     name: str | None = None, detach: Literal[True], locked: bool | None = None,
                     stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                     stderr: BinaryIO | None = None, detach_keys: str | None = None,
                     tty_size: tuple[int, int] | None = None,
                     on_created: Callable[[Container], None] | None = None) -> Container: ...

        @overload
        def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                     name: str | None = None, detach: Literal[False] = False,
                     locked: bool | None = None, stdin: BinaryIO | None = None,
                     stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                     detach_keys: str | None = None, tty_size: tuple[int, int] | None = None,
                     on_created: Callable[[Container], None] | None = None) -> int | None: ...

    def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                 name: str | None = None, detach: bool = False, locked: bool | None = None,
                 stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None, detach_keys: str | None = None,
                 tty_size: tuple[int, int] | None = None,
                 on_created: Callable[[Container], None] | None = None
                 ) -> Container | int | None:
        """``docker run``: create, start and (unless ``detach``) stay attached through
        dockerd's attach stream, as Docker's CLI does (see
        :meth:`portside.engine.models.interface.ContainerCollection.run_from`)."""
        container = self.create_from(config, host_config, name=name, locked=locked)
        if on_created is not None:
            on_created(container)
        if detach:
            try:
                container.start()
            except EngineError:
                _remove_if_auto(container)
                raise
            return container
        return self._foreground(container, stdin, stdout, stderr, start=True,
                                detach_keys=detach_keys, tty_size=tty_size)

    def start_attached(self, name: str, stdin: BinaryIO | None, stdout: BinaryIO,
                       stderr: BinaryIO, *, detach_keys: str | None = None,
                       tty_size: tuple[int, int] | None = None) -> int | None:
        """``docker start -a [-i]``: start and stay attached, as :meth:`run_from` does."""
        return self._foreground(self.get(name), stdin, stdout, stderr, start=True,
                                detach_keys=detach_keys, tty_size=tty_size)

    def _foreground(self, container: Container, stdin: BinaryIO | None,
                    stdout: BinaryIO | None, stderr: BinaryIO | None, *, start: bool,
                    detach_keys: str | None, tty_size: tuple[int, int] | None) -> int | None:
        """Attach (then start), copy the output until it ends, feed ``stdin`` when the
        container keeps standard input open; the exit status, or None when the caller
        detached. An interrupt stops the container and is raised again."""
        import threading

        config = container._config()
        tty = bool(config.get("Tty"))
        interactive = stdin is not None and bool(config.get("OpenStdin"))
        auto_remove = bool((container.attrs.get("HostConfig") or {}).get("AutoRemove"))
        conn = container.attach_socket(stdin=interactive, detach_keys=detach_keys)
        # asked before the start, as Docker's CLI asks: a container dockerd removes once it
        # exits (--rm) must not be gone before its status is read
        try:
            status = container.wait_later("removed" if auto_remove else
                                          ("next-exit" if start else "not-running"))
        except BaseException:
            conn.close()
            raise
        try:
            if start:
                try:
                    container.start()
                except BaseException:
                    status.close()  # type: ignore[attr-defined]
                    _remove_if_auto(container)
                    raise
            if tty and tty_size:
                with contextlib.suppress(EngineError):
                    self.api.resize(container.id, height=tty_size[0], width=tty_size[1])
            if interactive:
                def feed() -> None:
                    read = getattr(stdin, "read1", None) or stdin.read  # type: ignore[union-attr]
                    try:
                        for chunk in iter(lambda: read(65536), b""):
                            conn.send(chunk)
                    except (OSError, ValueError):
                        pass
                    conn.close_write()

                threading.Thread(target=feed, name="portside-docker-stdin", daemon=True).start()
            try:
                for stream, data in conn.frames(tty):
                    target = stderr if stream == "stderr" else stdout
                    if target is not None:
                        target.write(data)
                        target.flush()
            except KeyboardInterrupt:
                # ^C, or a notebook's interrupt: stop the container (dockerd removes it with
                # --rm) before giving the interrupt back
                status.close()  # type: ignore[attr-defined]
                with contextlib.suppress(EngineError):
                    container.stop()
                raise
        finally:
            conn.close()
        if interactive and not _ended(container):
            status.close()  # type: ignore[attr-defined]
            return None  # detached (the detach keys): it runs on
        return status()

    def prune(self, filters: Mapping[str, builtins.list[str]] | None = None
              ) -> dict[str, Any]:
        """Remove every stopped container: ``{"ContainersDeleted", "SpaceReclaimed"}``."""
        result = self.api.prune_containers(filters=dict(filters) if filters else None)
        return {"ContainersDeleted": result.get("ContainersDeleted") or None,
                "SpaceReclaimed": result.get("SpaceReclaimed") or 0}


def _ended(container: Container) -> bool:
    """Whether a container whose attach stream ended has stopped (or is gone): the stream of
    one that exits may end a moment before dockerd records the exit."""
    deadline = time.monotonic() + _DETACH_GRACE
    while True:
        try:
            container.reload()
        except NotFound:
            return True
        if container.status not in ("running", "paused", "restarting"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _remove_if_auto(container: Container) -> None:
    if (container.attrs.get("HostConfig") or {}).get("AutoRemove"):
        with contextlib.suppress(EngineError):
            container.remove(force=True)


def _gpu_request(gpus: str | int) -> dict:
    """``--gpus`` as dockerd's DeviceRequest (Docker's own grammar: all, N, device=…)."""
    text = str(gpus).strip()
    request: dict[str, Any] = {"Driver": "", "Count": 0, "DeviceIDs": None,
                               "Capabilities": [["gpu"]], "Options": {}}
    for part in _split_csv(text):
        key, eq, value = part.partition("=")
        if not eq:
            if part == "all":
                request["Count"] = -1
            elif part.isdigit():
                request["Count"] = int(part)
            else:
                raise InvalidArgument(f"invalid --gpus value: {text}")
        elif key == "count":
            request["Count"] = -1 if value == "all" else int(value)
        elif key == "device":
            request["DeviceIDs"] = [d for d in value.split(",") if d]
        elif key == "driver":
            request["Driver"] = value
        elif key == "capabilities":
            request["Capabilities"] = [[c for c in value.split(",") if c]]
        else:
            raise InvalidArgument(f"invalid --gpus option: {key}")
    return request


def _split_csv(text: str) -> list[str]:
    import csv

    return [p.strip() for p in next(csv.reader([text])) if p.strip()]


def _mount_doc(text: str) -> dict[str, Any]:
    """``--mount type=bind,source=/a,target=/b,readonly`` → dockerd's Mount object."""
    fields: dict[str, str] = {}
    for part in _split_csv(text):
        key, eq, value = part.partition("=")
        fields[key.strip().lower()] = value.strip() if eq else "true"
    kind = fields.pop("type", "volume")
    target = fields.pop("target", None) or fields.pop("destination", None) or \
        fields.pop("dst", None)
    if not target:
        raise InvalidArgument(f"invalid --mount: target is required: {text}")
    source = fields.pop("source", None) or fields.pop("src", None)
    doc: dict[str, Any] = {"Type": kind, "Target": target}
    if source:
        doc["Source"] = source
    for key in ("readonly", "ro"):
        if key in fields:
            doc["ReadOnly"] = fields.pop(key).lower() in ("true", "1", "")
    if kind == "bind" and "bind-propagation" in fields:
        doc["BindOptions"] = {"Propagation": fields.pop("bind-propagation")}
    if kind == "volume":
        opts: dict[str, Any] = {}
        if "volume-nocopy" in fields:
            opts["NoCopy"] = fields.pop("volume-nocopy").lower() in ("true", "1")
        if opts:
            doc["VolumeOptions"] = opts
    if kind == "tmpfs":
        opts = {}
        if "tmpfs-size" in fields:
            from ..units import parse_size

            opts["SizeBytes"] = parse_size(fields.pop("tmpfs-size"))
        if "tmpfs-mode" in fields:
            opts["Mode"] = int(fields.pop("tmpfs-mode"), 8)
        if opts:
            doc["TmpfsOptions"] = opts
    if fields:
        raise InvalidArgument(f"invalid --mount option(s): {', '.join(sorted(fields))}")
    return doc

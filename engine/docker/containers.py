"""Containers of a Docker Engine, with the embedded engine's model API.

``attrs`` is dockerd's ``container inspect`` document; the verbs are dockerd's. Output comes back
as it does from the embedded engine: ``logs(stream=True)`` and ``attach()`` yield
``("stdout"|"stderr", bytes)``, ``exec_run`` returns ``(exit_code, output)``, ``exec_popen``
starts a command with ``Popen``'s interface (:class:`~.streams.ExecProcess`).
"""

from __future__ import annotations

import time

from ..errors import ContainerExit, EngineError, InvalidArgument, NotFound
from ..models.resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Iterator

#: HostConfig keys that are portside's own bookkeeping and that dockerd does not know.
_PORTSIDE_ONLY = ("Gpus", "GpusOptional", "Warnings")


class Container(Model):
    """One container of the Docker Engine; ``attrs`` is dockerd's inspect document."""

    @property
    def name(self) -> str:
        return self.attrs["Name"].lstrip("/")

    @property
    def status(self) -> str:
        return self.attrs["State"]["Status"]

    @property
    def labels(self) -> dict[str, str]:
        return self.attrs["Config"].get("Labels") or {}

    @property
    def image(self):
        return self.collection.engine.images.get(self.attrs["Image"])

    @property
    def api(self):
        return self.collection.engine.api

    def reload(self) -> None:
        self.attrs = self.api.inspect_container(self.id)

    def _done(self) -> "Container":
        self.reload()
        return self

    # ---- verbs ----------------------------------------------------------------------------
    def start(self) -> "Container":
        self.api.start(self.id)
        return self._done()

    def stop(self, timeout: int | None = None) -> "Container":
        self.api.stop(self.id, timeout=timeout)
        return self._done()

    def restart(self, timeout: int | None = None) -> "Container":
        self.api.restart(self.id, timeout=10 if timeout is None else timeout)
        return self._done()

    def kill(self, signal: str | int = "KILL") -> "Container":
        self.api.kill(self.id, signal=signal)
        return self._done()

    def pause(self) -> "Container":
        self.api.pause(self.id)
        return self._done()

    def unpause(self) -> "Container":
        self.api.unpause(self.id)
        return self._done()

    def wait(self, timeout: float | None = None, condition: str | None = None
             ) -> dict[str, Any]:
        """Block until it stops; returns ``{"StatusCode": n, "Error": None}``. ``condition``:
        dockerd's ``not-running`` (default), ``next-exit`` or ``removed``."""
        from .errors import guarded_call

        engine = self.collection.engine
        try:
            result = guarded_call(engine, lambda: engine.client.wait(
                self.id, timeout=timeout, condition=condition))
        except EngineError as exc:
            if timeout is not None and "did not answer" in str(exc):
                from ..errors import IncorrectState

                raise IncorrectState(f"container {self.name} did not stop within "
                                     f"{timeout:g} s") from None
            raise
        error = result.get("Error") or None
        return {"StatusCode": int(result.get("StatusCode", 0)),
                "Error": error.get("Message") if isinstance(error, dict) else error}

    def wait_later(self, condition: str = "next-exit"):
        """Register a wait with dockerd now and return a function that blocks for the status.

        dockerd answers a wait's headers as soon as the wait is registered, so once this
        returns, an exit (or, with ``removed``, the removal of an ``--rm`` container) that
        follows a start cannot be missed, as Docker's CLI waits around ``run``."""
        import json

        from .errors import guarded_call

        engine = self.collection.engine
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

        return status

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.api.remove_container(self.id, v=v, force=force)

    def rename(self, name: str) -> None:
        self.api.rename(self.id, name)
        self.reload()

    def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: int | str | None = None, since: float | None = None,
             until: float | None = None, follow: bool = False,
             stop: Any = None) -> bytes | Iterator[tuple[str, bytes]]:
        """The container's output (dockerd's log driver must be readable: json-file, local).

        ``stream``/``follow`` give an iterator of (stream, bytes); ``stop`` (a callable) ends
        a follow early, e.g. when the reader has gone away."""
        params: dict[str, Any] = {"stdout": int(stdout), "stderr": int(stderr),
                                  "timestamps": int(timestamps), "follow": int(follow),
                                  "tail": "all" if tail in (None, "all") else str(int(tail))}
        if since is not None:
            params["since"] = f"{since:.9f}"
        if until is not None:
            params["until"] = f"{until:.9f}"
        frames = self._stream(f"/containers/{self.id}/logs", params, stop=stop)
        if stream or follow:
            return frames
        return b"".join(data for _s, data in frames)

    def _stream(self, path: str, params: dict, stop: Any = None, method: str = "get"
                ) -> Iterator[tuple[str, bytes]]:
        """A multiplexed (or, with a TTY, raw) output stream as (stream, bytes) items."""
        from .errors import guarded_call, guarded_stream

        engine = self.collection.engine
        client = engine.client
        tty = bool(self.attrs["Config"].get("Tty"))

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

    def attach(self, *, stdout: bool = True, stderr: bool = True, stream: bool = True,
               logs: bool = False) -> bytes | Iterator[tuple[str, bytes]]:
        """Its output from now on (``logs``: from the start), until it stops."""
        conn = self.attach_socket(stdin=False, stdout=stdout, stderr=stderr, logs=logs)
        frames = _closing(conn.frames(bool(self.attrs["Config"].get("Tty"))), conn)
        if stream:
            return frames
        return b"".join(data for _s, data in frames)

    def attach_socket(self, *, stdin: bool = True, stdout: bool = True, stderr: bool = True,
                      logs: bool = False, detach_keys: str | None = None):
        """A hijacked attach connection (:class:`~.streams.Hijacked`): ``send`` is its stdin,
        ``frames(tty)`` its output."""
        from .streams import hijack

        params = {"stream": 1, "stdin": int(stdin), "stdout": int(stdout),
                  "stderr": int(stderr), "logs": int(logs)}
        if detach_keys:
            params["detachKeys"] = detach_keys
        return hijack(self.collection.engine, f"/containers/{self.id}/attach", None, params)

    def top(self, ps_args: str = "") -> dict[str, Any]:
        """Docker's ``top``: ``{"Titles": [...], "Processes": [[...], ...]}``."""
        return self.api.top(self.id, ps_args=ps_args or None)

    def stats(self) -> dict[str, Any]:
        """One sample of dockerd's stats document (memory, cpu, pids, network, block I/O)."""
        return self.api.stats(self.id, stream=False)

    def exec_run(self, cmd: str | list[str], *, stdout: bool = True, stderr: bool = True,
                 tty: bool = False, detach: bool = False, environment: list[str] | dict | None = None,
                 workdir: str = "", user: str = "", privileged: bool = False
                 ) -> tuple[int | None, bytes]:
        """Run a command in the container; returns ``(exit_code, output)``."""
        import shlex

        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        created = self.api.exec_create(self.id, argv, stdout=stdout, stderr=stderr, tty=tty,
                                       environment=_env_list(environment) or None,
                                       workdir=workdir or None, user=user or "",
                                       privileged=privileged)
        if detach:
            self.api.exec_start(created["Id"], detach=True)
            return None, b""
        from .streams import hijack

        conn = hijack(self.collection.engine, f"/exec/{created['Id']}/start",
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

    def exec_popen(self, argv: list[str], *, user: str | None = None,
                   workdir: str | None = None, env: list[str] | None = None, tty: bool = False,
                   stdin: Any = None, stdout: Any = None, stderr: Any = None,
                   privileged: bool = False):
        """Start ``argv`` in the running container with ``Popen``'s interface and pipes (see
        :class:`~.streams.ExecProcess`). Raises NotFound / IncorrectState (not running)."""
        from .streams import ExecProcess

        return ExecProcess(self, list(argv), user=user, workdir=workdir, env=env, tty=tty,
                           stdin=stdin, stdout=stdout, stderr=stderr, privileged=privileged)

    def commit(self, repository: str | None = None, tag: str | None = None, *,
               message: str = "", author: str = "", changes: list[str] | str = (),
               pause: bool = True):
        repo, tag = _split_ref(repository, tag)
        changes_list = [changes] if isinstance(changes, str) else list(changes)
        result = self.api.commit(self.id, repository=repo, tag=tag, message=message or None,
                                 author=author or None, changes=changes_list or None,
                                 pause=pause)
        return self.collection.engine.images.get(result["Id"])

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

        engine = self.collection.engine
        client = engine.client

        def head():
            res = client.head(client._url("/containers/{0}/archive", self.id),
                              params={"path": path}, timeout=engine.timeout)
            if res.status_code == 404:  # the container exists (it was looked up): the path not
                return None
            client._raise_for_status(res)
            return res.headers.get("X-Docker-Container-Path-Stat")

        header = guarded_call(engine, head)
        return json.loads(base64.b64decode(header)) if header else None

    def put_archive(self, path: str, data: BinaryIO | bytes) -> bool:
        """Extract a tar (bytes or a stream) into the container folder ``path``."""
        body = data if isinstance(data, (bytes, bytearray)) else _chunks(data)
        return bool(self.api.put_archive(self.id, path, body))

    def port(self, private_port: str | None = None) -> dict[str, list[dict]]:
        """Published ports in force: ``{"80/tcp": [{"HostIp", "HostPort"}]}``."""
        ports = (self.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        return {k: v for k, v in ports.items() if v}


def _split_ref(repository: str | None, tag: str | None) -> tuple[str | None, str | None]:
    if repository and tag is None:
        last = repository.rsplit("/", 1)[-1]
        if ":" in last and "@" not in repository:
            repository, _, tag = repository.rpartition(":")
    return repository, tag


def _env_list(env: list[str] | dict | None) -> list[str]:
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


def _closing(frames: Iterator, conn: Any) -> Iterator:
    try:
        yield from frames
    finally:
        conn.close()


class ContainerCollection(Collection):
    """``engine.containers`` of a Docker context."""

    model = Container

    @property
    def api(self):
        return self.engine.api

    def get(self, name: str) -> Container:
        """The container with that name, id or id prefix. Raises NotFound."""
        return Container(self.api.inspect_container(name), self)

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             limit: int | None = None) -> list[Container]:
        """Containers, newest first (dockerd's order and filters)."""
        rows = self.api.containers(all=all, filters=filters or None,
                                   limit=-1 if limit is None else limit)
        out = []
        for row in rows:
            try:
                out.append(self.get(row["Id"]))
            except NotFound:
                continue  # removed between the listing and its inspection
        return out

    def create_from(self, config: dict, host_config: dict, *, name: str | None = None,
                    pull: bool = True, progress: Any = None) -> Container:
        """Create from Docker's ``Config`` and ``HostConfig`` documents (what ``run``'s flags
        make). A missing image is pulled first, as ``docker run`` does (``pull=False``: not)."""
        body = dict(config)
        body["HostConfig"] = self._host_config(host_config)
        client_call = self.engine.client  # noqa: F841 - connects (and fails) before the body
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
        """Our HostConfig as dockerd takes it: ``--mount`` text parsed, portside's keys out."""
        out = {k: v for k, v in hc.items() if k not in _PORTSIDE_ONLY and v is not None}
        if hc.get("CDIDevices"):
            raise self.engine.unsupported("CDI devices (--device vendor/class=name)",
                                          "use --gpus or a device path")
        out.pop("CDIDevices", None)
        mounts = out.get("Mounts")
        if mounts and isinstance(mounts[0], str):
            out["Mounts"] = [_mount_doc(m) for m in mounts]
        if out.get("NetworkMode") in ("default", ""):
            out["NetworkMode"] = "default"
        return out

    def create(self, image: str, command: str | list[str] | None = None,
               **kwargs: Any) -> Container:
        """docker-py's ``containers.create`` (the same keywords as the embedded engine's)."""
        from ..models.containers import docker_py_kwargs

        config, host_config, name = docker_py_kwargs(image, command, kwargs)
        if host_config.get("Gpus"):
            host_config["DeviceRequests"] = [_gpu_request(host_config["Gpus"])]
        return self.create_from(config, host_config, name=name)

    def run(self, image: str, command: str | list[str] | None = None, *, detach: bool = False,
            remove: bool = False, stdout: bool = True, stderr: bool = False,
            **kwargs: Any) -> Container | bytes:
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
                try:
                    container.remove(force=True)
                except EngineError:
                    pass
            raise
        if detach:
            return container
        code = container.wait()["StatusCode"]
        out = container.logs(stdout=stdout, stderr=stderr)
        if remove:
            container.remove(force=True)
        if code != 0:
            raise ContainerExit(code, f"container {container.name} exited with {code}: "
                                      f"{out[-200:].decode(errors='replace').strip()}")
        return out  # type: ignore[return-value]

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Remove every stopped container: ``{"ContainersDeleted", "SpaceReclaimed"}``."""
        result = self.api.prune_containers(filters=filters or None)
        return {"ContainersDeleted": result.get("ContainersDeleted") or None,
                "SpaceReclaimed": result.get("SpaceReclaimed") or 0}


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

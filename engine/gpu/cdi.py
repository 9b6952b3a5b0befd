"""Container Device Interface (CDI): device specs from files, edits applied to an OCI spec.

CDI lets a vendor describe, in a JSON or YAML file, what a container needs to use a device: device
nodes, mounts, environment variables, hooks, extra groups. A spec file declares a *kind*
(``vendor.com/class``, e.g. ``nvidia.com/gpu``) and a list of named devices; the fully qualified
name ``nvidia.com/gpu=0`` picks one. Each device carries ``containerEdits``; the spec may carry
spec-wide ``containerEdits`` that every device of that spec also needs (the driver libraries, say)::

    cdiVersion: 0.6.0
    kind: nvidia.com/gpu
    devices:
      - name: "0"
        containerEdits:
          deviceNodes: [{path: /dev/nvidia0}]
    containerEdits:
      deviceNodes: [{path: /dev/nvidiactl}]
      mounts: [{hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15,
                containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15, options: [ro, bind]}]

Spec files live in spec folders (``/etc/cdi`` then ``/var/run/cdi``); a later folder wins when two
define the same device, so generated specs in ``/var/run/cdi`` override static ones. Loading is
strict, as the specification asks: unknown fields are errors, and a spec must declare a
``cdiVersion`` at least as new as the features it uses.

This module reads specs (:func:`load_spec`, :func:`parse_spec`), indexes them (:class:`Registry`),
turns device names into one merged :class:`ContainerEdits` (:meth:`Registry.resolve`) and writes
those edits into an OCI runtime spec held as a plain dict (:func:`apply_edits`).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from collections.abc import Iterable

from portside.engine.errors import InvalidArgument
from portside.engine.gpu.request import KIND_RE, NAME_RE, split_cdi_name
from portside.engine.records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


__all__ = ["SUPPORTED_VERSIONS", "DEFAULT_SPEC_DIRS", "DeviceNode", "Mount", "Hook",
           "ContainerEdits", "Device", "Spec", "parse_spec", "load_spec", "Registry",
           "apply_edits", "spec_dirs_from_env"]

#: Versions of the CDI specification this reader understands.
SUPPORTED_VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0")
DEFAULT_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
#: OCI hook points a CDI hook may name.
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def _vtuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


@record
class DeviceNode:
    """A device node to create in the container (and allow in its devices cgroup)."""

    path: str
    host_path: str | None = None
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    file_mode: int | None = None
    permissions: str | None = None
    uid: int | None = None
    gid: int | None = None


@record
class Mount:
    """A mount to add: ``host_path`` on ``container_path``."""

    host_path: str
    container_path: str
    options: list[str] = field(default_factory=list)
    type: str | None = None


@record
class Hook:
    """An OCI hook to run at ``hook_name`` (``createContainer``, ``poststop``...)."""

    hook_name: str
    path: str
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    timeout: int | None = None


@record
class ContainerEdits:
    """Changes to an OCI spec that expose devices to a container.

    ``ldconfig_refresh`` is portside's own: True asks the runtime to run ``ldconfig`` in the
    container before the process starts, because libraries were mounted into it (the NVIDIA
    toolkit does this with a hook). ``warnings`` are notes for the user (e.g. a skipped check).
    """

    env: list[str] = field(default_factory=list)
    device_nodes: list[DeviceNode] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    additional_gids: list[int] = field(default_factory=list)
    ldconfig_refresh: bool = False
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: ContainerEdits) -> ContainerEdits:
        """Append ``other``'s edits to these (in place) and return self."""
        self.env.extend(other.env)
        self.device_nodes.extend(other.device_nodes)
        self.mounts.extend(other.mounts)
        self.hooks.extend(other.hooks)
        self.additional_gids.extend(g for g in other.additional_gids if g not in self.additional_gids)
        self.ldconfig_refresh = self.ldconfig_refresh or other.ldconfig_refresh
        self.warnings.extend(other.warnings)
        return self

    def is_empty(self) -> bool:
        """True when applying these edits would change nothing."""
        return not (self.env or self.device_nodes or self.mounts or self.hooks
                    or self.additional_gids)


@record
class Device:
    """One named device of a spec."""

    name: str
    edits: ContainerEdits
    annotations: dict[str, str] = field(default_factory=dict)


@record
class Spec:
    """One CDI spec file: a kind, its devices and spec-wide edits."""

    version: str
    kind: str
    devices: dict[str, Device]
    edits: ContainerEdits
    annotations: dict[str, str] = field(default_factory=dict)
    path: str = ""


# ---------------------------------------------------------------------------------------------
# strict parsing

class _Reader:
    """Checks one JSON object against the fields it may hold, and the version they need."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.needs: tuple[int, ...] = (0, 3, 0)

    def fail(self, msg: str) -> InvalidArgument:
        return InvalidArgument(f"CDI spec {self.where}: {msg}")

    def need(self, version: str) -> None:
        self.needs = max(self.needs, _vtuple(version))

    def obj(self, value: Any, what: str, allowed: dict[str, str | None],
            required: Iterable[str] = ()) -> dict[str, Any]:
        """Validate a mapping: only ``allowed`` keys (key -> minimum version or None)."""
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be an object")
        for key in value:
            if key not in allowed:
                raise self.fail(f"unknown field {key!r} in {what}")
            if allowed[key] and value[key] not in (None, [], {}, ""):
                self.need(allowed[key])  # type: ignore[arg-type]
        for key in required:
            if key not in value or value[key] in (None, ""):
                raise self.fail(f"{what} is missing {key!r}")
        return value

    def strings(self, value: Any, what: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{what} must be a list of strings")
        return list(value)

    def string_map(self, value: Any, what: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.fail(f"{what} must map strings to strings")
        return {str(k): v for k, v in value.items()}

    def integer(self, value: Any, what: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{what} must be an integer")
        return value

    def edits(self, value: Any, what: str) -> ContainerEdits:
        if value is None:
            return ContainerEdits()
        d = self.obj(value, what, {"env": None, "deviceNodes": None, "hooks": None, "mounts": None,
                                   "intelRdt": "0.7.0", "additionalGids": "0.7.0"})
        edits = ContainerEdits(env=self.strings(d.get("env"), f"{what}.env"))
        for e in edits.env:
            if "=" not in e:
                raise self.fail(f"invalid env entry {e!r} (want NAME=value)")
        for i, n in enumerate(d.get("deviceNodes") or []):
            w = f"{what}.deviceNodes[{i}]"
            n = self.obj(n, w, {"path": None, "hostPath": "0.5.0", "type": None, "major": None,
                                "minor": None, "fileMode": None, "permissions": None,
                                "uid": None, "gid": None}, required=["path"])
            perms = n.get("permissions")
            if perms is not None and (not isinstance(perms, str) or not set(perms) <= set("rwm")):
                raise self.fail(f"{w}: invalid permissions {perms!r}")
            if n.get("type") not in (None, "", "b", "c", "u", "p"):
                raise self.fail(f"{w}: invalid type {n.get('type')!r}")
            edits.device_nodes.append(DeviceNode(
                path=str(n["path"]), host_path=n.get("hostPath") or None,
                type=n.get("type") or None, major=self.integer(n.get("major"), f"{w}.major"),
                minor=self.integer(n.get("minor"), f"{w}.minor"),
                file_mode=self.integer(n.get("fileMode"), f"{w}.fileMode"),
                permissions=perms or None, uid=self.integer(n.get("uid"), f"{w}.uid"),
                gid=self.integer(n.get("gid"), f"{w}.gid")))
        for i, m in enumerate(d.get("mounts") or []):
            w = f"{what}.mounts[{i}]"
            m = self.obj(m, w, {"hostPath": None, "containerPath": None, "options": None,
                                "type": "0.4.0"}, required=["hostPath", "containerPath"])
            edits.mounts.append(Mount(host_path=str(m["hostPath"]),
                                      container_path=str(m["containerPath"]),
                                      options=self.strings(m.get("options"), f"{w}.options"),
                                      type=m.get("type") or None))
        for i, h in enumerate(d.get("hooks") or []):
            w = f"{what}.hooks[{i}]"
            h = self.obj(h, w, {"hookName": None, "path": None, "args": None, "env": None,
                                "timeout": None}, required=["hookName", "path"])
            if h["hookName"] not in HOOK_NAMES:
                raise self.fail(f"{w}: unknown hookName {h['hookName']!r}")
            edits.hooks.append(Hook(hook_name=h["hookName"], path=str(h["path"]),
                                    args=self.strings(h.get("args"), f"{w}.args"),
                                    env=self.strings(h.get("env"), f"{w}.env"),
                                    timeout=self.integer(h.get("timeout"), f"{w}.timeout")))
        gids = d.get("additionalGids") or []
        if not isinstance(gids, list):
            raise self.fail(f"{what}.additionalGids must be a list")
        edits.additional_gids = [g for g in (self.integer(g, f"{what}.additionalGids") for g in gids)
                                 if g is not None]
        # intelRdt is accepted (it is part of the spec) but portside does not apply it.
        return edits


def parse_spec(data: Any, where: str = "<memory>") -> Spec:
    """Validate a decoded CDI spec (the dict from JSON or YAML) and type it.

    Args:
        data: the decoded document.
        where: a name for messages (usually the file path).

    Returns:
        the :class:`Spec`.

    Raises:
        InvalidArgument: unknown fields, missing required fields, an unsupported ``cdiVersion``,
            a version older than the fields used need, a bad kind or device name, a duplicate
            device name.
    """
    r = _Reader(where)
    d = r.obj(data, "spec", {"cdiVersion": None, "kind": None, "devices": None,
                             "containerEdits": None, "annotations": "0.6.0"},
              required=["cdiVersion", "kind"])
    version = str(d["cdiVersion"])
    if version not in SUPPORTED_VERSIONS:
        raise r.fail(f"unsupported cdiVersion {version!r} (supported: {', '.join(SUPPORTED_VERSIONS)})")
    kind = d["kind"]
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise r.fail(f"invalid kind {kind!r} (want vendor.com/class)")
    vendor, cls = kind.split("/", 1)
    if "." in cls:
        r.need("0.6.0")
    devices: dict[str, Device] = {}
    raw_devices = d.get("devices") or []
    if not isinstance(raw_devices, list):
        raise r.fail("devices must be a list")
    for i, dev in enumerate(raw_devices):
        w = f"devices[{i}]"
        dev = r.obj(dev, w, {"name": None, "annotations": "0.6.0", "containerEdits": None},
                    required=["name"])
        name = str(dev["name"])
        if not NAME_RE.match(name):
            raise r.fail(f"invalid device name {name!r}")
        if name[0].isdigit():
            r.need("0.5.0")
        if name in devices:
            raise r.fail(f"device {name!r} is defined twice")
        if "containerEdits" not in dev:
            raise r.fail(f"{w} is missing 'containerEdits'")
        edits = r.edits(dev["containerEdits"], f"{w}.containerEdits")
        if edits.is_empty():
            raise r.fail(f"device {name!r} has no container edits")
        devices[name] = Device(name=name, edits=edits,
                               annotations=r.string_map(dev.get("annotations"), f"{w}.annotations"))
    spec_edits = r.edits(d.get("containerEdits"), "containerEdits")
    if r.needs > _vtuple(version):
        need = ".".join(map(str, r.needs))
        raise r.fail(f"cdiVersion {version} is too old for the fields it uses (needs {need})")
    return Spec(version=version, kind=kind, devices=devices, edits=spec_edits,
                annotations=r.string_map(d.get("annotations"), "annotations"), path=where)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate one CDI spec file (``.json``, ``.yaml`` or ``.yml``).

    Raises:
        InvalidArgument: the file cannot be read or decoded, or :func:`parse_spec` rejects it.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidArgument(f"CDI spec {p}: {exc.strerror}") from exc
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml  # only YAML specs pay for the import

            data = yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError
        raise InvalidArgument(f"CDI spec {p}: not valid JSON: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError and friends
        raise InvalidArgument(f"CDI spec {p}: not valid YAML: {' '.join(str(exc).split())}") from exc
    return parse_spec(data, str(p))


def spec_dirs_from_env(default: Iterable[str] = DEFAULT_SPEC_DIRS) -> list[str]:
    """The spec folders: ``PORTSIDE_CDI_SPEC_DIRS`` split on ``:`` when set, else ``default``."""
    value = os.environ.get("PORTSIDE_CDI_SPEC_DIRS")
    if value is None:
        return list(default)
    return [d for d in value.split(":") if d]


class Registry:
    """Every CDI device found in a list of spec folders.

    Folders are read in order; a device defined in a later folder replaces the one of the same
    fully qualified name from an earlier folder. Within one folder files are read in name order and
    two files defining the same device make that device unusable (the spec calls it a conflict).
    A file that fails to load is skipped and its error kept in :attr:`errors`.
    """

    def __init__(self, dirs: Iterable[str | os.PathLike[str]] | None = None) -> None:
        self.dirs = [Path(d) for d in (spec_dirs_from_env() if dirs is None else dirs)]
        self.specs: list[Spec] = []
        self.errors: dict[str, str] = {}
        self._devices: dict[str, tuple[Spec, Device]] = {}
        self._conflicts: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Re-read every spec folder."""
        self.specs, self.errors, self._devices, self._conflicts = [], {}, {}, set()
        for d in self.dirs:
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue  # a missing folder is normal (no vendor installed specs there)
            in_this_dir: set[str] = set()
            for fname in names:
                if not fname.endswith((".json", ".yaml", ".yml")):
                    continue
                try:
                    spec = load_spec(d / fname)
                except InvalidArgument as exc:
                    self.errors[str(d / fname)] = str(exc)
                    continue
                self.add(spec, _dir_seen=in_this_dir)

    def add(self, spec: Spec, *, _dir_seen: set[str] | None = None) -> None:
        """Add one spec (e.g. one generated by ``nvidia-ctk``), overriding same-named devices."""
        self.specs.append(spec)
        for name, dev in spec.devices.items():
            qualified = f"{spec.kind}={name}"
            if _dir_seen is not None and qualified in _dir_seen:
                self._conflicts.add(qualified)
            else:
                # a definition from a later folder (or added by hand) replaces a conflicted one
                self._conflicts.discard(qualified)
            if _dir_seen is not None:
                _dir_seen.add(qualified)
            self._devices[qualified] = (spec, dev)

    def devices(self, kind: str | None = None) -> list[str]:
        """Fully qualified names of the usable devices, optionally of one kind."""
        return sorted(n for n in self._devices
                      if n not in self._conflicts and (kind is None or n.startswith(kind + "=")))

    def device(self, name: str) -> Device | None:
        """The usable device of that fully qualified name (its own edits, without its spec's),
        or None."""
        if name in self._conflicts or name not in self._devices:
            return None
        return self._devices[name][1]

    def resolve(self, names: Iterable[str]) -> ContainerEdits:
        """Merge the edits for the named devices into one :class:`ContainerEdits`.

        For each device, in order, the spec-wide edits of its spec come first (once per spec),
        then the device's own.

        Raises:
            InvalidArgument: a name that is not a qualified CDI name, or one no spec defines
                (``unresolvable CDI devices: nvidia.com/gpu=9``).
        """
        names = list(dict.fromkeys(names))
        for n in names:
            split_cdi_name(n)
        missing = [n for n in names if n not in self._devices or n in self._conflicts]
        if missing:
            raise InvalidArgument(f"unresolvable CDI devices: {', '.join(missing)}")
        edits = ContainerEdits()
        used_specs: list[int] = []
        for n in names:
            spec, dev = self._devices[n]
            if id(spec) not in used_specs:
                used_specs.append(id(spec))
                edits.extend(_copy(spec.edits))
            edits.extend(_copy(dev.edits))
        return edits


def _copy(edits: ContainerEdits) -> ContainerEdits:
    return ContainerEdits().extend(edits)


# ---------------------------------------------------------------------------------------------
# applying edits to an OCI spec dict

def _fill_from_host(node: DeviceNode) -> DeviceNode:
    """Complete type/major/minor (and mode) from the host's node when the spec leaves them out."""
    if node.type and node.major is not None and (node.minor is not None or node.type == "p"):
        return node
    src = node.host_path or node.path
    try:
        st = os.stat(src)
    except OSError as exc:
        raise InvalidArgument(f"CDI device node {src}: {exc.strerror}") from exc
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        raise InvalidArgument(f"CDI device node {src} is not a device")
    if node.type and node.type not in (kind, "u" if kind == "c" else kind):
        raise InvalidArgument(f"CDI device node {src}: type {node.type} but the host has {kind}")
    return DeviceNode(path=node.path, host_path=node.host_path, type=node.type or kind,
                      major=os.major(st.st_rdev) if node.major is None else node.major,
                      minor=os.minor(st.st_rdev) if node.minor is None else node.minor,
                      file_mode=node.file_mode if node.file_mode is not None
                      else stat.S_IMODE(st.st_mode),
                      permissions=node.permissions, uid=node.uid, gid=node.gid)


def apply_edits(spec: dict[str, Any], edits: ContainerEdits) -> dict[str, Any]:
    """Write ``edits`` into an OCI runtime spec (``config.json`` as a dict), in place.

    * device nodes go to ``linux.devices`` (replacing one with the same path) with a matching
      allow rule in ``linux.resources.devices``; type/major/minor missing from the edit are read
      from the host node (``hostPath``, else ``path``);
    * mounts are added (replacing one with the same destination), then all mounts are sorted,
      stably, by destination depth so a parent is mounted before what goes inside it;
    * ``env`` entries replace process variables of the same name;
    * hooks are appended under their hook point; ``additionalGids`` join the process user's.

    Args:
        spec: the OCI spec dict.
        edits: the edits to apply.

    Returns:
        the same ``spec`` dict.

    Raises:
        InvalidArgument: a device node that cannot be found or is not a device.
    """
    process = spec.setdefault("process", {})
    if edits.env:
        env: list[str] = process.setdefault("env", [])
        for assignment in edits.env:
            name = assignment.split("=", 1)[0]
            env[:] = [e for e in env if e.split("=", 1)[0] != name]
            env.append(assignment)
    if edits.device_nodes:
        linux = spec.setdefault("linux", {})
        devices: list[dict[str, Any]] = linux.setdefault("devices", [])
        rules: list[dict[str, Any]] = linux.setdefault("resources", {}).setdefault("devices", [])
        for raw in edits.device_nodes:
            node = _fill_from_host(raw)
            entry: dict[str, Any] = {"path": node.path, "type": node.type, "major": node.major,
                                     "minor": node.minor}
            if node.file_mode is not None:
                entry["fileMode"] = node.file_mode
            if node.uid is not None:
                entry["uid"] = node.uid
            if node.gid is not None:
                entry["gid"] = node.gid
            devices[:] = [d for d in devices if d.get("path") != node.path]
            devices.append(entry)
            if node.type == "p":
                continue  # fifos are not governed by the devices cgroup
            rule = {"allow": True, "type": "c" if node.type == "u" else node.type,
                    "major": node.major, "minor": node.minor,
                    "access": node.permissions or "rwm"}
            if rule not in rules:
                rules.append(rule)
    if edits.mounts:
        mounts: list[dict[str, Any]] = spec.setdefault("mounts", [])
        for m in edits.mounts:
            entry = {"destination": m.container_path, "type": m.type or "bind",
                     "source": m.host_path, "options": list(m.options)}
            mounts[:] = [x for x in mounts if x.get("destination") != m.container_path]
            mounts.append(entry)
        mounts.sort(key=lambda x: len(Path(x.get("destination", "/")).parts))
    if edits.hooks:
        hooks: dict[str, list[dict[str, Any]]] = spec.setdefault("hooks", {})
        for h in edits.hooks:
            entry = {"path": h.path}
            if h.args:
                entry["args"] = list(h.args)
            if h.env:
                entry["env"] = list(h.env)
            if h.timeout is not None:
                entry["timeout"] = h.timeout
            hooks.setdefault(h.hook_name, []).append(entry)
    if edits.additional_gids:
        user = process.setdefault("user", {"uid": 0, "gid": 0})
        gids: list[int] = user.setdefault("additionalGids", [])
        gids.extend(g for g in edits.additional_gids if g not in gids)
    return spec

"""Mount specifications: the ``-v``, ``--mount`` and ``--tmpfs`` grammars, parsed as Docker does.

A container sees three kinds of mounts:

* a **bind** mount shows a host file or directory at a path in the container
  (``-v /srv/data:/data``, ``--mount type=bind,src=/srv/data,dst=/data``);
* a **volume** mount shows an engine-managed directory (``PORTSIDE_ROOT/volumes/NAME/_data``).
  A *named* volume (``-v data:/data``) outlives every container; an *anonymous* one
  (``-v /data``, or a ``VOLUME`` of the image) gets a random 64-hex name and is removed with
  ``rm -v`` or ``volume prune``;
* a **tmpfs** mount is memory-backed scratch space (``--mount type=tmpfs,dst=/scratch``,
  ``--tmpfs /run:size=64m``).

``-v`` is the short form ``[SOURCE:]TARGET[:MODE]``: a SOURCE that is an absolute path makes a bind
mount, anything else names a volume, no SOURCE makes an anonymous volume. MODE is a comma list with
at most one of each family: ``ro``/``rw``; ``z``/``Z`` (SELinux relabelling, accepted and ignored
here); ``nocopy`` (do not seed a new volume with the image's content); a propagation
(``rprivate private rshared shared rslave slave``); a consistency (``consistent cached delegated``,
accepted for compatibility). ``--mount`` is the long form, a CSV list of ``key=value`` fields.

Parsing is pure (no file system access) and produces a frozen :class:`MountSpec`; whether a bind
source exists is checked by the volume manager when the mount is prepared. Error messages are
Docker's, word for word, so scripts and people that know them recognise them::

    >>> parse_volume("a:b:c:d")
    Traceback (most recent call last):
    InvalidArgument: invalid volume specification: 'a:b:c:d'
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Iterable

from ..errors import InvalidArgument
from ..records import field, record

__all__ = ["MountSpec", "parse_volume", "parse_mount", "mount_from_api", "parse_tmpfs", "valid_mode",
           "validate_volume_name", "check_duplicates", "PROPAGATIONS"]

PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
_RW = ("rw", "ro")
_LABEL = ("z", "Z")
_COPY = ("nocopy",)
_CONSISTENCY = ("consistent", "cached", "delegated")
# The local driver's rule for volume names (two characters at least).
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@record(frozen=True)
class MountSpec:
    """One requested mount, before any volume is created or any path checked.

    Attributes:
        type: ``"bind"``, ``"volume"`` or ``"tmpfs"``.
        target: the absolute, cleaned path in the container.
        source: the host path (bind) or the volume name (volume); ``""`` for an anonymous
            volume or a tmpfs.
        readonly: mount read-only.
        mode: the raw MODE of ``-v`` (Docker reports it as the mount's ``Mode``); ``""`` otherwise.
        propagation: ``rprivate`` ... ``slave``, or ``""`` for the default (``rprivate``).
        nocopy: do not seed a new volume with the image's content at ``target``.
        create_source: a missing bind source is created as a directory (``-v``), not refused
            (``--mount``).
        nonrecursive: bind without submounts (``bind-nonrecursive``).
        volume_driver, volume_labels, volume_options: ``--mount`` volume settings, used when the
            named volume is first created.
        tmpfs_size: bytes, or ``None`` for the kernel's default (half of RAM).
        tmpfs_mode: permission bits of the tmpfs root, or ``None`` (``1777``).
        tmpfs_options: extra mount options of ``--tmpfs PATH:OPTS``.
    """

    type: str
    target: str
    source: str = ""
    readonly: bool = False
    mode: str = ""
    propagation: str = ""
    nocopy: bool = False
    create_source: bool = False
    nonrecursive: bool = False
    volume_driver: str = ""
    volume_labels: dict[str, str] = field(default_factory=dict)
    volume_options: dict[str, str] = field(default_factory=dict)
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
    tmpfs_options: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        """A volume mount with no name: the engine makes one up."""
        return self.type == "volume" and not self.source


# ----------------------------------------------------------------------------- -v / --volume
def valid_mode(mode: str) -> bool:
    """Whether ``mode`` is a valid ``-v`` MODE: known words, at most one of each family.

    Args:
        mode: the text after the second colon, e.g. ``"ro,z"``; ``""`` is valid.

    Returns:
        True when Docker would accept it.
    """
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for word in mode.split(","):
        if word in _RW:
            counts["rw"] += 1
        elif word in _LABEL:
            counts["label"] += 1
        elif word in PROPAGATIONS:
            counts["propagation"] += 1
        elif word in _COPY:
            counts["copy"] += 1
        elif word in _CONSISTENCY:
            counts["consistency"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


def validate_volume_name(name: str) -> None:
    """Refuse a name the local volume driver cannot use (Docker's exact message).

    Raises:
        InvalidArgument: ``name`` has characters outside ``[a-zA-Z0-9_.-]`` or is too short; a
            relative host path such as ``data/x`` or ``./x`` lands here, as in Docker.
    """
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")


def parse_volume(raw: str) -> MountSpec:
    """Parse one ``-v``/``--volume`` value: ``[SOURCE:]TARGET[:MODE]``.

    Args:
        raw: the flag's value, e.g. ``"data:/data:ro"``, ``"/srv:/srv"``, ``"/cache"``.

    Returns:
        The spec; a bind's missing source will be created (``create_source``).

    Raises:
        InvalidArgument: with Docker's message, e.g. ``invalid volume specification: 'a:b:c:d'``,
            ``invalid mode: xyz``, or ``invalid volume specification: 'v:rel': invalid mount
            config for type "volume": invalid mount path: 'rel' mount path must be absolute``.
    """
    parts = raw.split(":", 3)
    if parts[0] == "":
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if valid_mode(parts[1]):
            # "/foo:rw" -- a destination with a mode but no source is not a volume.
            raise InvalidArgument(f"invalid volume specification: '{raw}'")
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    if not valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    words = mode.split(",") if mode else []
    kind = "bind" if source.startswith("/") else "volume"
    propagation = next((w for w in words if w in PROPAGATIONS), "")
    nocopy = "nocopy" in words

    def fail(reason: str, kind_: str = kind) -> InvalidArgument:
        return InvalidArgument(f"invalid volume specification: '{raw}': "
                               f'invalid mount config for type "{kind_}": {reason}')

    _check_target(target, fail)
    if kind == "bind":
        if nocopy:
            raise fail("field VolumeOptions must not be specified")
        source = posixpath.normpath(source)
    else:
        if propagation:
            raise fail("field BindOptions must not be specified")
        if source:
            validate_volume_name(source)
    return MountSpec(type=kind, target=posixpath.normpath(target), source=source,
                     readonly="ro" in words, mode=mode,
                     propagation=propagation or ("rprivate" if kind == "bind" else ""),
                     nocopy=nocopy, create_source=kind == "bind")


def _check_target(target: str, fail) -> None:
    if not target:
        raise fail("field Target must not be empty")
    if posixpath.normpath(target.replace("\\", "/")) == "/":
        raise fail("invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise fail(f"invalid mount path: '{target}' mount path must be absolute")


# ----------------------------------------------------------------------------- --mount
def _parse_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"invalid value for {key}: {value}")


def parse_mount(raw: str) -> MountSpec:
    """Parse one ``--mount`` value: CSV fields ``key=value`` (a few flags stand alone).

    Keys: ``type`` (``bind``, ``volume`` -- the default --, ``tmpfs``); ``source``/``src``;
    ``target``/``dst``/``destination``; ``readonly``/``ro`` (alone or ``=true|false``);
    ``bind-propagation``, ``bind-nonrecursive``; ``volume-nocopy``, ``volume-driver``,
    ``volume-label=K=V``, ``volume-opt=K=V``; ``tmpfs-size`` (``64m``), ``tmpfs-mode`` (octal);
    ``consistency`` (accepted, ignored).

    Returns:
        The spec; a bind source must exist when the mount is prepared.

    Raises:
        InvalidArgument: Docker's messages (``target is required``, ``unexpected key 'x' in
            'x=1'``, ``invalid mount config for type "tmpfs": field Source must not be
            specified``, ...).
    """
    import csv

    try:
        fields = next(csv.reader([raw]), [])
    except csv.Error as exc:
        raise InvalidArgument(f"invalid --mount value {raw!r}: {exc}") from exc
    kind = "volume"
    source = target = propagation = driver = ""
    readonly = nocopy = nonrecursive = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    size: int | None = None
    tmode: int | None = None
    families: set[str] = set()  # which of bind-/volume-/tmpfs- options were given
    for item in fields:
        key, eq, value = item.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                readonly = True
            elif key == "volume-nocopy":
                nocopy = True
                families.add("volume")
            elif key == "bind-nonrecursive":
                nonrecursive = True
                families.add("bind")
            else:
                raise InvalidArgument(f"invalid field '{item}' must be a key=value pair")
            continue
        if key == "type":
            kind = value.lower()
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "dst", "destination"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(key, value)
        elif key == "consistency":
            pass  # a macOS file-sharing hint; meaningless on Linux
        elif key == "bind-propagation":
            propagation = value.lower()
            families.add("bind")
        elif key == "bind-nonrecursive":
            nonrecursive = _parse_bool(key, value)
            families.add("bind")
        elif key == "volume-nocopy":
            nocopy = _parse_bool(key, value)
            families.add("volume")
        elif key == "volume-driver":
            driver = value
            families.add("volume")
        elif key in ("volume-label", "volume-opt"):
            k, _, v = value.partition("=")
            if k:
                (labels if key == "volume-label" else options)[k] = v
            families.add("volume")
        elif key == "tmpfs-size":
            from ..units import parse_size

            try:
                size = parse_size(value)
            except InvalidArgument:
                raise InvalidArgument(f"invalid value for {key}: {value}") from None
            families.add("tmpfs")
        elif key == "tmpfs-mode":
            try:
                tmode = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for {key}: {value}") from None
            families.add("tmpfs")
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{item}'")
    if not kind:
        raise InvalidArgument("type is required")
    if not target:
        raise InvalidArgument("target is required")
    for family in ("volume", "bind", "tmpfs"):
        if family in families and kind != family:
            raise InvalidArgument(f"cannot mix '{family}-*' options with mount type '{kind}'")

    def fail(reason: str) -> InvalidArgument:
        return InvalidArgument(f'invalid mount config for type "{kind}": {reason}')

    _check_target(target, fail)
    if kind == "bind":
        if not source:
            raise fail("field Source must not be empty")
        if propagation and propagation not in PROPAGATIONS:
            raise fail(f"invalid propagation mode: {propagation}")
        if not source.startswith("/"):
            raise fail(f"invalid mount path: '{source}' mount path must be absolute")
        source = posixpath.normpath(source)
        propagation = propagation or "rprivate"
    elif kind == "volume":
        if not source and readonly:
            raise fail("must not set ReadOnly mode when using anonymous volumes")
        if source:
            validate_volume_name(source)
    elif kind == "tmpfs":
        if source:
            raise fail("field Source must not be specified")
    else:
        raise fail("mount type unknown")
    return MountSpec(type=kind, target=posixpath.normpath(target), source=source,
                     readonly=readonly, propagation=propagation, nocopy=nocopy,
                     nonrecursive=nonrecursive, volume_driver=driver, volume_labels=labels,
                     volume_options=options, tmpfs_size=size, tmpfs_mode=tmode)


def mount_from_api(mount: dict) -> MountSpec:
    """Parse one Docker API ``HostConfig.Mounts`` object (docker-py's ``Mount``).

    ``{"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True,
    "BindOptions": {"Propagation": "rshared"}, "VolumeOptions": {"NoCopy": True, "Labels": {},
    "DriverConfig": {"Name": "local", "Options": {}}}, "TmpfsOptions": {"SizeBytes": 1048576,
    "Mode": 1023}}`` -- the same rules and messages as :func:`parse_mount`.

    Raises:
        InvalidArgument: as :func:`parse_mount`.
    """
    fields = [f"type={mount.get('Type') or 'volume'}", f"target={mount.get('Target', '')}"]
    if mount.get("Source"):
        fields.append(f"source={mount['Source']}")
    if mount.get("ReadOnly"):
        fields.append("readonly")
    bind = mount.get("BindOptions") or {}
    if bind.get("Propagation"):
        fields.append(f"bind-propagation={bind['Propagation']}")
    if bind.get("NonRecursive"):
        fields.append("bind-nonrecursive")
    vol = mount.get("VolumeOptions") or {}
    if vol.get("NoCopy"):
        fields.append("volume-nocopy")
    for key, value in (vol.get("Labels") or {}).items():
        fields.append(f"volume-label={key}={value}")
    driver = vol.get("DriverConfig") or {}
    if driver.get("Name"):
        fields.append(f"volume-driver={driver['Name']}")
    for key, value in (driver.get("Options") or {}).items():
        fields.append(f"volume-opt={key}={value}")
    tmpfs = mount.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        fields.append(f"tmpfs-size={int(tmpfs['SizeBytes'])}")
    if tmpfs.get("Mode"):
        fields.append(f"tmpfs-mode={int(tmpfs['Mode']):o}")
    line = io.StringIO()
    import csv

    csv.writer(line, lineterminator="").writerow(fields)
    return parse_mount(line.getvalue())


# ----------------------------------------------------------------------------- --tmpfs
def parse_tmpfs(raw: str) -> MountSpec:
    """Parse one ``--tmpfs PATH[:OPTIONS]`` value (OPTIONS as for ``mount -t tmpfs``).

    ``ro``/``rw``, ``size=`` (``64m``) and ``mode=`` (octal) are understood; other options
    (``exec``, ``noexec``, ``uid=``...) are passed to the kernel as given.

    Raises:
        InvalidArgument: a relative or root path, or an unreadable size or mode.
    """
    target, _, opts = raw.partition(":")

    def fail(reason: str) -> InvalidArgument:
        return InvalidArgument(f'invalid mount config for type "tmpfs": {reason}')

    _check_target(target, fail)
    readonly = False
    size: int | None = None
    mode: int | None = None
    extra: list[str] = []
    for opt in filter(None, opts.split(",")):
        key, eq, value = opt.partition("=")
        if opt in _RW:
            readonly = opt == "ro"
        elif key == "size" and eq:
            from ..units import parse_size

            size = parse_size(value)
        elif key == "mode" and eq:
            try:
                mode = int(value, 8)
            except ValueError:
                raise fail(f"invalid tmpfs mode: {value}") from None
        else:
            extra.append(opt)
    return MountSpec(type="tmpfs", target=posixpath.normpath(target), readonly=readonly,
                     tmpfs_size=size, tmpfs_mode=mode, tmpfs_options=tuple(extra))


def check_duplicates(specs: Iterable[MountSpec]) -> None:
    """Refuse two user mounts on one container path, as Docker does.

    Raises:
        InvalidArgument: ``Duplicate mount point: /data``.
    """
    seen: set[str] = set()
    for spec in specs:
        if spec.target in seen:
            raise InvalidArgument(f"Duplicate mount point: {spec.target}")
        seen.add(spec.target)

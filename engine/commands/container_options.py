"""``run``/``create``'s flags and their translation into Docker's ``Config`` and ``HostConfig``.

:func:`create_arguments` declares Docker's flags on a parser of the command table (so the CLI and
``%container`` parse them alike); :func:`build_create` turns the parsed flags into the two
documents Docker's API takes, which ``engine.containers.create_from`` accepts. The unit tests
exercise the translation without a container.

Everything after the image on a ``run``/``create`` line belongs to the container: the image is the
first positional and the command is ``argparse.REMAINDER``, so ``run -it busybox ls -l`` hands
``-l`` to ``ls`` rather than to ``--label``.
"""

from __future__ import annotations

import os

from ..cli import add_locked_flag
from ..envvars import env_value, read_env_file
from ..errors import InvalidArgument

TYPE_CHECKING = False  # annotations only (argparse itself comes with the first parser: cli._Parser)
if TYPE_CHECKING:
    import argparse

#: argparse's ``nargs`` for "every word left" (``argparse.REMAINDER``, without importing it)
REMAINDER = "..."

__all__ = ["create_arguments", "build_create", "parse_restart", "parse_publish", "parse_device",
           "parse_cpus", "parse_swap"]


def create_arguments(p: argparse.ArgumentParser) -> None:
    """Declare ``run``/``create``'s flags (Docker's) on ``p``."""
    # Docker's `-h` is --hostname; help stays reachable as --help.
    help_action = p._option_string_actions.pop("-h", None)
    if help_action is not None:
        help_action.option_strings = [o for o in help_action.option_strings if o != "-h"]
    a = p.add_argument
    a("--name", help="assign a name to the container")
    a("-i", "--interactive", action="store_true", help="keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    a("--rm", action="store_true", help="remove the container when it exits")
    a("-h", "--hostname", help="container host name")
    a("--domainname", default="", help="container NIS domain name")
    a("-e", "--env", action="append", default=[], help="set environment variables")
    a("--env-file", action="append", default=[], help="read in a file of environment variables")
    a("-w", "--workdir", help="working directory inside the container")
    a("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    a("--group-add", action="append", default=[], help="add additional groups to join")
    a("--entrypoint", help="overwrite the default ENTRYPOINT of the image")
    a("-v", "--volume", action="append", default=[], help="bind mount a volume")
    a("--mount", action="append", default=[], help="attach a filesystem mount to the container")
    a("--volumes-from", action="append", default=[], help="mount volumes from the container(s)")
    a("--tmpfs", action="append", default=[], help="mount a tmpfs directory")
    a("--shm-size", help="size of /dev/shm")
    a("-m", "--memory", help="memory limit")
    a("--memory-swap", help="swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    a("--cpus", help="number of CPUs")
    a("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)")
    a("--pids-limit", type=int, help="tune container pids limit (-1 for unlimited)")
    a("--cap-add", action="append", default=[], help="add Linux capabilities")
    a("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    a("--privileged", action="store_true", help="give extended privileges to this container")
    a("--read-only", action="store_true", help="mount the container's root filesystem as read only")
    a("--security-opt", action="append", default=[], help="security options")
    a("--stop-signal", help="signal to stop the container")
    a("--stop-timeout", type=int, help="timeout (in seconds) to stop a container")
    a("-l", "--label", action="append", default=[], help="set meta data on a container")
    a("--label-file", action="append", default=[], help="read in a line delimited file of labels")
    a("--restart", default="no", help="restart policy: no, on-failure[:N], always, unless-stopped")
    a("--network", "--net", dest="network", default="default", help="connect a container to a network")
    a("-p", "--publish", action="append", default=[], help="publish a container's port(s)")
    a("-P", "--publish-all", action="store_true", help="publish all exposed ports")
    a("--expose", action="append", default=[], help="expose a port or a range of ports")
    a("--add-host", action="append", default=[], help="add a custom host-to-IP mapping (host:ip)")
    a("--dns", action="append", default=[], help="set custom DNS servers")
    a("--gpus", help="GPU devices to add to the container ('all' to pass all GPUs)")
    a("--gpus-optional", action="store_true", help="start without a GPU when none is available")
    a("--device", action="append", default=[], help="add a host device (or a CDI device name)")
    a("--ulimit", action="append", default=[], help="ulimit options (name=soft[:hard])")
    a("--init", action="store_true", help="run an init (the host's tini) as PID 1: it forwards signals and reaps zombies")
    a("--platform", help="set platform if server is multi-platform capable")
    a("--runtime", help="OCI runtime to use for this container (runc or crun)")
    add_locked_flag(p)
    a("--pull", default="missing", help="pull image before running (missing only)")
    a("-a", "--attach", action="append", default=[], help="attach to STDIN, STDOUT or STDERR")
    a("--detach-keys", default="ctrl-p,ctrl-q", help="override the key sequence for detaching")
    a("--sig-proxy", default="true",
      help="proxy received signals to the process (--sig-proxy=false: none)")
    a("image", help="IMAGE")
    a("command", nargs=REMAINDER, help="COMMAND [ARG...]")


# the names this module's callers knew them by
_read_env_file, _env_value = read_env_file, env_value


def parse_cpus(text: str) -> int:
    """``--cpus 1.5`` → Docker's ``NanoCpus`` (1.5×10⁹)."""
    try:
        nano = int(float(text) * 1e9)
    except ValueError as exc:
        raise InvalidArgument(f"invalid argument {text!r} for --cpus") from exc
    if nano <= 0:
        raise InvalidArgument(f"invalid argument {text!r} for --cpus")
    return nano


def parse_swap(text: str) -> int:
    """``--memory-swap``: a size, or ``-1`` for unlimited swap."""
    from ..units import parse_size

    return -1 if text.strip() == "-1" else parse_size(text)


def parse_restart(text: str) -> dict:
    """``no``, ``always``, ``unless-stopped``, ``on-failure[:N]`` → Docker's RestartPolicy."""
    name, _, count = (text or "no").partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy format: {text}")
    if count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    if count and not count.isdigit():
        raise InvalidArgument(f"maximum retry count must be an integer: {count}")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_publish(items: list[str]) -> tuple[dict, dict]:
    """``-p [ip:][hostPort:]containerPort[/proto]`` → (ExposedPorts, PortBindings)."""
    exposed: dict = {}
    bindings: dict = {}
    for item in items:
        parts = item.rsplit(":", 2)
        if len(parts) == 1:
            ip, host, ctr = "", "", parts[0]
        elif len(parts) == 2:
            ip, host, ctr = "", parts[0], parts[1]
        else:
            ip, host, ctr = parts
        port, _, proto = ctr.partition("/")
        proto = proto or "tcp"
        if not port.split("-")[0].isdigit() or (host and not host.split("-")[0].isdigit()):
            raise InvalidArgument(f"invalid port specification: {item}")
        key = f"{port}/{proto}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host})
    return exposed, bindings


def parse_device(item: str) -> dict:
    """``/dev/X[:/dev/Y][:rwm]`` → Docker's device mapping."""
    parts = item.split(":")
    host = parts[0]
    ctr = host
    perms = "rwm"
    if len(parts) == 2:
        if parts[1].startswith("/"):
            ctr = parts[1]
        else:
            perms = parts[1]
    elif len(parts) == 3:
        ctr, perms = parts[1], parts[2]
    elif len(parts) > 3:
        raise InvalidArgument(f"invalid device specification: {item}")
    if not set(perms) <= set("rwm") or not perms:
        raise InvalidArgument(f"invalid device specification: {item}")
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


def build_create(args: argparse.Namespace) -> tuple[dict, dict, str | None]:
    """Turn ``run``/``create`` flags into Docker's ``Config`` and ``HostConfig`` and the name.

    Raises:
        InvalidArgument: a malformed flag value.
    """
    from ..units import parse_size

    env: list[str] = []
    for path in args.env_file:
        env += [v for v in (_env_value(x) for x in _read_env_file(path)) if v]
    env += [v for v in (_env_value(x) for x in args.env) if v]
    labels: dict[str, str] = {}
    for path in args.label_file:
        for line in _read_env_file(path):
            k, _, v = line.partition("=")
            labels[k] = v
    for item in args.label:
        k, _, v = item.partition("=")
        labels[k] = v
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    exposed, bindings = parse_publish(args.publish)
    for item in args.expose:
        port, _, proto = item.partition("/")
        exposed[f"{port}/{proto or 'tcp'}"] = {}
    config: dict = {
        "Hostname": args.hostname or "", "Domainname": args.domainname, "User": args.user or "",
        "AttachStdin": args.interactive, "AttachStdout": True, "AttachStderr": True,
        "Tty": args.tty, "OpenStdin": args.interactive, "StdinOnce": args.interactive,
        "Env": env, "Cmd": command or None, "Image": args.image,
        "Volumes": None, "WorkingDir": args.workdir or "",
        "Entrypoint": None if args.entrypoint is None else ([args.entrypoint] if args.entrypoint
                                                            else [""]),
        "Labels": labels, "StopSignal": args.stop_signal or "",
        "ExposedPorts": exposed or None,
    }
    if args.stop_timeout is not None:
        config["StopTimeout"] = args.stop_timeout
    tmpfs: dict[str, str] = {}
    for item in args.tmpfs:
        path, _, opts = item.partition(":")
        tmpfs[path] = opts
    ulimits = []
    for item in args.ulimit:
        name, eq, value = item.partition("=")
        soft, _, hard = value.partition(":")
        if not eq or not soft.lstrip("-").isdigit() or (hard and not hard.lstrip("-").isdigit()):
            raise InvalidArgument(f"invalid ulimit argument: {item}")
        ulimits.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
    devices, cdi = [], []
    for item in args.device:
        if "=" in item and not item.startswith("/"):
            cdi.append(item)
        else:
            devices.append(parse_device(item))
    cpus = parse_cpus(args.cpus) if args.cpus else 0
    network = args.network or "default"
    host_config: dict = {
        "Binds": list(args.volume) or None,
        "NetworkMode": network,
        "PortBindings": bindings,
        "PublishAllPorts": args.publish_all,
        "RestartPolicy": parse_restart(args.restart),
        "AutoRemove": args.rm,
        "VolumesFrom": list(args.volumes_from) or None,
        "Mounts": list(args.mount) or None,
        "CapAdd": list(args.cap_add) or None,
        "CapDrop": list(args.cap_drop) or None,
        "Dns": list(args.dns),
        "ExtraHosts": list(args.add_host) or None,
        "Privileged": args.privileged,
        "ReadonlyRootfs": args.read_only,
        "SecurityOpt": list(args.security_opt) or None,
        "Tmpfs": tmpfs or None,
        "ShmSize": parse_size(args.shm_size) if args.shm_size else 64 * 1024 * 1024,
        "Memory": parse_size(args.memory) if args.memory else 0,
        "MemorySwap": parse_swap(args.memory_swap) if args.memory_swap else 0,
        "NanoCpus": cpus,
        "CpuShares": args.cpu_shares,
        "PidsLimit": args.pids_limit,
        "GroupAdd": list(args.group_add) or None,
        "Devices": devices,
        "Ulimits": ulimits or None,
        "Init": args.init or None,
    }
    for item in args.add_host:
        if ":" not in item:
            raise InvalidArgument(f"bad format for add-host: {item}")
    if cdi:
        host_config["CDIDevices"] = cdi
    if args.gpus:
        host_config["Gpus"] = args.gpus
        host_config["GpusOptional"] = args.gpus_optional
        host_config["DeviceRequests"] = [{"Driver": "nvidia", "Count": -1 if args.gpus == "all"
                                          else 0, "DeviceIDs": None,
                                          "Capabilities": [["gpu"]], "Options": {},
                                          "Request": args.gpus}]
    if args.platform:
        host_config["Platform"] = args.platform  # checked by the engine against its host
    if args.runtime:
        host_config["Runtime"] = args.runtime  # checked by the engine (runtime/runtimes.py)
    if args.rm and host_config["RestartPolicy"]["Name"] != "no":
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    return config, host_config, args.name

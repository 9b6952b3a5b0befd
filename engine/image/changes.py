"""``--change`` for ``import`` and ``commit``: Dockerfile instructions applied to an image config.

Docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME and WORKDIR here; each
change is one instruction in Dockerfile syntax, e.g. ``--change 'CMD ["sh"]'``.
"""

from __future__ import annotations

import json
import shlex

from ..errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR")


def _json_or_shell(rest: str, *, shell_form: bool) -> list[str]:
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text] if shell_form else shlex.split(text)


def _pairs(rest: str, what: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if not words:
        raise InvalidArgument(f"{what} requires at least one argument")
    if "=" not in words[0]:
        # legacy form: ENV key value with spaces
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what} names can not be blank: {word}")
        pairs.append((key, value))
    return pairs


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Apply each change to ``config`` (the image config's ``config`` object) and return it."""
    for change in changes:
        text = change.strip()
        if not text:
            continue
        instr, _, rest = text.partition(" ")
        instr = instr.upper()
        if "\t" in instr:
            instr, _, more = instr.partition("\t")
            rest = more + " " + rest
        if instr not in ALLOWED:
            raise InvalidArgument(f"{instr} is not a valid change command")
        if instr == "CMD":
            config["Cmd"] = _json_or_shell(rest, shell_form=True)
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = _json_or_shell(rest, shell_form=True)
        elif instr == "ENV":
            env = [e for e in config.get("Env") or []]
            for key, value in _pairs(rest, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            config["Env"] = env
        elif instr == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(dict(_pairs(rest, "LABEL")))
            config["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for port in rest.split():
                ports[port if "/" in port else port + "/tcp"] = {}
            config["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            for v in _json_or_shell(rest, shell_form=False):
                vols[v] = {}
            config["Volumes"] = vols
        elif instr == "USER":
            config["User"] = rest.strip()
        elif instr == "WORKDIR":
            config["WorkingDir"] = rest.strip()
        elif instr == "ONBUILD":
            config["OnBuild"] = list(config.get("OnBuild") or []) + [rest.strip()]
    return config

"""Commit with a recipe: the cells that made a container's state, and a Dockerfile that redoes them.

``commit`` turns a container's file changes into a layer, but a layer says *what* changed, not
*how*. When the changes came from notebook cells run in the container (``%%container exec``,
``%container attach``), the notebook knows how: the committed image gets a label
``io.portside.recipe`` holding those cells, in order::

    [{"cell": "3f2a9c", "kind": "python", "code": "import json\\n..."},
     {"cell": "77b01e", "kind": "shell",  "code": "apt-get install -y jq"}]

and its base (the image the container was made from) in ``org.opencontainers.image.base.name``
and ``.base.digest``. :func:`dockerfile` turns that back into a Dockerfile: ``FROM base@digest``,
then one ``RUN`` per shell cell (a here-document run by the shell) and one ``RUN python3 -`` per
run of consecutive Python cells. Consecutive Python cells share one interpreter because they
shared one namespace in the container's agent; a later cell may use an earlier cell's variables.
"""

from __future__ import annotations

import json
import shlex

from .errors import InvalidArgument, NotFound
from .records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping


__all__ = ["RecipeCell", "Recipe", "recipe_of_image", "dockerfile"]

LABEL_RECIPE = "io.portside.recipe"
LABEL_BASE_NAME = "org.opencontainers.image.base.name"
LABEL_BASE_DIGEST = "org.opencontainers.image.base.digest"


@record(frozen=True)
class RecipeCell:
    """One cell run in a container: its notebook cell id, its kind (python | shell), its code."""

    cell: str
    kind: str
    code: str
    workdir: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"cell": self.cell, "kind": self.kind, "code": self.code}
        if self.workdir:
            doc["workdir"] = self.workdir
        if self.env:
            doc["env"] = dict(self.env)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "RecipeCell":
        kind = doc.get("kind")
        if kind not in ("python", "shell") or not isinstance(doc.get("code"), str):
            raise InvalidArgument(f"{LABEL_RECIPE}: a cell needs kind python|shell and code")
        return cls(str(doc.get("cell") or ""), kind, doc["code"], doc.get("workdir"),
                   tuple(sorted((str(k), str(v)) for k, v in (doc.get("env") or {}).items())))


@record
class Recipe:
    """A base image and the cells run on top of it."""

    base_name: str
    base_digest: str
    cells: list[RecipeCell] = field(default_factory=list)

    @property
    def base_ref(self) -> str:
        """``name@sha256:…`` (the name without its tag), or the digest alone."""
        from .image.reference import parse_reference

        if not self.base_name:
            return self.base_digest
        try:
            ref = parse_reference(self.base_name)
        except InvalidArgument:
            return self.base_digest
        return f"{ref.familiar_name}@{self.base_digest}"

    def labels(self) -> dict[str, str]:
        """The labels a commit records (``commit --change LABEL ...``)."""
        return {LABEL_RECIPE: json.dumps([c.to_json() for c in self.cells],
                                         separators=(",", ":")),
                LABEL_BASE_NAME: self.base_name, LABEL_BASE_DIGEST: self.base_digest}

    def changes(self) -> list[str]:
        """The labels as ``commit`` changes (each value quoted as one word)."""
        return ["LABEL " + shlex.quote(f"{k}={v}") for k, v in self.labels().items()]


def recipe_of_image(image: Any) -> Recipe | None:
    """The recipe an image carries, or None.

    Args:
        image: an :class:`~portside.engine.models.interface.Image` (its labels are read).

    Raises:
        InvalidArgument: the recipe label is not what a commit writes.
    """
    labels = image.labels
    raw = labels.get(LABEL_RECIPE)
    if raw is None:
        return None
    try:
        cells = [RecipeCell.from_json(c) for c in json.loads(raw)]
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{image.short_id}: label {LABEL_RECIPE} is not a JSON list of "
                              "cells") from None
    return Recipe(labels.get(LABEL_BASE_NAME, ""), labels.get(LABEL_BASE_DIGEST, ""), cells)


def recipe_for_container_image(image: Any, cells: Iterable[RecipeCell]) -> Recipe:
    """The recipe a commit of a container made from ``image`` (an
    :class:`~portside.engine.models.interface.Image`) records: the image's own recipe (when it
    was itself committed with one) followed by ``cells``."""
    parent = recipe_of_image(image)
    if parent is not None and parent.base_digest:
        return Recipe(parent.base_name, parent.base_digest, [*parent.cells, *cells])
    names = image.tags
    digest = (image.attrs.get("Descriptor") or {}).get("digest") or ""
    return Recipe(names[0] if names else "", digest, list(cells))


def _delimiter(code: str) -> str:
    lines = set(code.splitlines())
    word = "EOF"
    n = 0
    while word in lines:
        n += 1
        word = f"EOF{n}"
    return word


def _prefix(cell: RecipeCell) -> str:
    parts = []
    if cell.workdir:
        parts.append(f"cd {shlex.quote(cell.workdir)} &&")
    if cell.env:
        parts.append("env " + " ".join(shlex.quote(f"{k}={v}") for k, v in cell.env))
    return " ".join(parts) + (" " if parts else "")


def dockerfile(recipe: Recipe) -> str:
    """A Dockerfile that rebuilds the committed state from the recipe's base.

    Raises:
        InvalidArgument: the recipe has no base digest.
    """
    if not recipe.base_digest:
        raise InvalidArgument("the recipe has no base image digest")
    lines = [f"# rebuilt by portside from {len(recipe.cells)} notebook cell(s)",
             f"FROM {recipe.base_ref}"]
    groups: list[list[RecipeCell]] = []
    for cell in recipe.cells:
        if (groups and cell.kind == "python" and groups[-1][0].kind == "python"
                and _prefix(groups[-1][0]) == _prefix(cell)):
            groups[-1].append(cell)
        else:
            groups.append([cell])
    for group in groups:
        first = group[0]
        ids = ", ".join(c.cell or "?" for c in group)
        if first.kind == "python":
            code = "".join(f"# cell {c.cell or '?'}\n{c.code.rstrip()}\n" for c in group)
            word = _delimiter(code)
            lines.append(f"# cell(s) {ids} (python)")
            lines.append(f"RUN {_prefix(first)}python3 - <<'{word}'\n{code}{word}")
        else:
            code = first.code.rstrip() + "\n"
            if first.workdir or first.env:
                code = ("cd " + shlex.quote(first.workdir) + "\n" if first.workdir else "") + \
                       "".join(f"export {k}={shlex.quote(v)}\n" for k, v in first.env) + code
            word = _delimiter(code)
            lines.append(f"# cell {ids} (shell)")
            lines.append(f"RUN <<'{word}'\nset -e\n{code}{word}")
    return "\n".join(lines) + "\n"


def dockerfile_for(image: Any) -> str:
    """:func:`dockerfile` for a committed image (an
    :class:`~portside.engine.models.interface.Image`). Raises NotFound when it has no recipe."""
    recipe = recipe_of_image(image)
    if recipe is None:
        raise NotFound(f"{image.tags[0] if image.tags else image.short_id} has no recipe (commit "
                       "it with %container commit from a notebook)")
    return dockerfile(recipe)

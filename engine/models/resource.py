"""Base classes for models and collections."""

from __future__ import annotations

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


class Model:
    """One object (image, container, volume, network) with Docker-shaped ``attrs``."""

    id_attribute = "Id"

    def __init__(self, attrs: dict[str, Any], collection: Any) -> None:
        self.attrs = attrs
        self.collection = collection

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__}: {self.short_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, self.__class__) and self.id == other.id

    def __hash__(self) -> int:
        return hash(f"{self.__class__.__name__}:{self.id}")

    @property
    def id(self) -> str:
        return self.attrs[self.id_attribute]

    @property
    def short_id(self) -> str:
        ident = self.id
        return (ident.split(":", 1)[1] if ident.startswith("sha256:") else ident)[:12]

    def reload(self) -> None:
        self.attrs = self.collection.get(self.id).attrs


class Collection:
    model: type[Model] = Model

    def __init__(self, engine: Any) -> None:
        self.engine = engine

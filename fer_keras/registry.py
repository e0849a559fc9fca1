"""A small name → builder registry (timm style), with case-insensitive lookup."""

from __future__ import annotations

import importlib
from typing import Callable, Dict, Generic, TypeVar

from fer_keras.errors import FerError, nearest_hint

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; `get` of an unknown name raises an error listing the valid names.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("CustomCNN")
        ... def build(...): ...
        >>> MODELS.get("customcnn")
    """

    def __init__(self, kind: str, error_cls: type = FerError):
        self.kind = kind
        self.error_cls = error_cls
        self._items: Dict[str, T] = {}
        self._names: Dict[str, str] = {}  # lower-case name -> canonical spelling

    def register(self, name: str, **metadata) -> Callable[[T], T]:
        """Decorator that registers `obj` under `name`; `metadata` is stored as attributes of the object."""

        def deco(obj: T) -> T:
            key = name.lower()
            if key in self._names:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            self._names[key] = name
            for k, v in metadata.items():
                setattr(obj, k, v)
            return obj

        return deco

    def canonical(self, name: str) -> str:
        """Returns the registered spelling of `name` (case-insensitive), or raises with the valid names."""
        key = str(name).lower()
        if key not in self._names:
            raise self.error_cls(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
                                 + nearest_hint(name, self.names()))
        return self._names[key]

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list:
        return sorted(self._items, key=str.lower)

    def __contains__(self, name: str) -> bool:
        return str(name).lower() in self._names


class Roles:
    """A registry entry whose roles are "module:function" strings, imported on first use (`fn`): reading the
    registry (config checks, `--help`) imports none of them. Used by the task and detection-architecture tables."""

    def fn(self, role: str) -> Callable:
        """The function of `role`, imported now."""
        ref = getattr(self, role)
        if ref is None:
            raise FerError(f"this kind of run has no {role}")
        module, name = ref.split(":")
        return getattr(importlib.import_module(module), name)

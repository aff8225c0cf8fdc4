"""What a plugin of one kind receives when it is built, and what it must return.

Each :class:`~registry.core.Registry` holds one declaration of its contract: the
*build context* (keyword arguments the framework passes next to the user's ``PARAMS``)
and the :class:`Returns` check. ``build_*`` passes exactly that context and checks the
result, config validation treats those names as framework-set (not user ``PARAMS``), and
the registry's docstring prints the same declaration, so the three cannot disagree.

The check imports nothing until it runs (``base`` is a dotted name), which keeps
``import registry`` free of torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Union

from registry.errors import RegistryError


class PluginContractError(RegistryError, TypeError):
    """A plugin returned something that breaks its kind's contract, or was built with the wrong context."""


@dataclass(frozen=True)
class ContextArg:
    """One keyword argument the framework passes when it builds a plugin."""

    name: str
    meaning: str


@dataclass(frozen=True)
class Returns:
    """What a plugin of a kind must return when built.

    ``meaning`` is the prose of the contract; ``base`` the dotted name of a class the
    result must be an instance of; ``attributes`` the attributes or methods it must
    have; ``check`` an extra test returning a problem (str) or None.
    """

    meaning: str
    base: str = ""
    attributes: Tuple[str, ...] = ()
    allow_none: bool = False
    check: Optional[Callable[[Any], Optional[str]]] = None

    def problem(self, obj: Any) -> Optional[str]:
        """Why ``obj`` breaks this contract, or None when it keeps it."""
        if obj is None:
            return None if self.allow_none else "it returned None"
        if self.base:
            base = resolve_dotted(self.base)
            if not isinstance(obj, base):
                return f"it returned a {type(obj).__module__}.{type(obj).__qualname__}, not a {self.base}"
        missing = [name for name in self.attributes if not hasattr(obj, name)]
        if missing:
            return f"the {type(obj).__qualname__} it returned has no {', '.join(missing)}"
        return self.check(obj) if self.check is not None else None

    def describe(self) -> str:
        """The contract in words, as the docstring and the error messages print it."""
        parts = []
        if self.base:
            parts.append(f"a ``{self.base}``")
        if self.attributes:
            parts.append("with " + ", ".join(f"``{a}``" for a in self.attributes))
        if self.allow_none:
            parts.append("(or ``None``)")
        head = " ".join(parts)
        return f"{head}: {self.meaning}" if head else self.meaning


def resolve_dotted(name: str) -> Any:
    """The object a dotted name points to (``"torch.nn.Module"``), imported on first use."""
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module or "builtins"), attr)


ContextSpec = Union[ContextArg, Tuple[str, str]]


def context_args(spec: Iterable[ContextSpec]) -> Tuple[ContextArg, ...]:
    """Normalize a context declaration (``ContextArg`` or ``(name, meaning)`` pairs) to ``ContextArg``s."""
    return tuple(a if isinstance(a, ContextArg) else ContextArg(*a) for a in spec)


def contract_docstring(kind: str, context: Sequence[ContextArg], returns: Optional[Returns]) -> str:
    """The "Plugin contract" section of a registry's docstring, written from its declaration."""
    builder = f"build_{kind.replace(' ', '_')}"
    lines = ["Plugin contract (generated from this registry's declaration):", ""]
    if context:
        call = ", ".join(f"{a.name}=..." for a in context)
        lines.append(f"* Built with ``{builder}(spec, {call})``: the plugin receives its ``PARAMS`` plus")
        lines += [f"  - ``{a.name}``: {a.meaning}" for a in context]
        lines.append("  (set by the framework; not allowed under ``PARAMS``).")
    else:
        lines.append(f"* Built with ``{builder}(spec)``: the plugin receives its ``PARAMS`` only.")
    if returns is not None:
        lines.append(f"* Returns {returns.describe()}")
    return "\n".join(lines)

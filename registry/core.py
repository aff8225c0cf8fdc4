"""The Registry class behind every extension point (built on fvcore's)."""
from __future__ import annotations

import difflib
import inspect
import logging
import os
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from fvcore.common.registry import Registry as _FvcoreRegistry

from registry.contract import ContextArg, ContextSpec, PluginContractError, Returns, context_args, contract_docstring
from registry.discovery import ensure_builtin_plugins
from registry.errors import DuplicateNameError, PluginParamsError, RegistryError, UnknownNameError

logger = logging.getLogger(__name__)

__all__ = [
    "Registry", "RegistryError", "DuplicateNameError", "UnknownNameError", "PluginParamsError", "PluginContractError",
    "ContextArg", "Returns",
    "build", "check_params_against", "closest_match", "plugin_signature", "spec_name_and_params",
]


def closest_match(name: str, candidates) -> Optional[str]:
    """The candidate most similar to ``name`` (difflib ratio >= 0.5), for "Did you mean ...?" hints; else None."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return matches[0] if matches else None


def _caller_site(depth: int) -> str:
    # sys._getframe, not inspect.stack(): the latter reads source context for every frame of the
    # (deep) import stack and cost seconds over the built-in plugins' registrations.
    frame = sys._getframe(depth)
    return f"{os.path.abspath(frame.f_code.co_filename)}:{frame.f_lineno}"


def _definition_site(obj: Any) -> str:
    try:
        return f"{os.path.abspath(inspect.getsourcefile(obj))}:{inspect.getsourcelines(obj)[1]}"
    except (TypeError, OSError):
        return getattr(obj, "__module__", "<unknown>")


def spec_name_and_params(spec: Any) -> Tuple[str, Dict[str, Any]]:
    """Split a plugin spec (``"name"`` or ``{NAME, PARAMS}``) into name and params."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping):
        try:  # an OmegaConf DictConfig
            from omegaconf import OmegaConf

            spec = OmegaConf.to_container(spec, resolve=True)
        except Exception:
            raise RegistryError(f"A plugin spec must be a name or a mapping with NAME and PARAMS, got {spec!r}")
    name = spec.get("NAME", spec.get("name"))
    if name is None:
        raise RegistryError(f"Plugin spec {dict(spec)!r} has no NAME: add NAME: <registered name>.")
    params = spec.get("PARAMS", spec.get("params")) or {}
    if not isinstance(params, Mapping):
        try:
            from omegaconf import OmegaConf

            params = OmegaConf.to_container(params, resolve=True)
        except Exception:
            raise RegistryError(f"PARAMS of plugin {name!r} must be a mapping, got {params!r}")
    return str(name), dict(params)


class Registry(_FvcoreRegistry):
    """A named registry of plugins of one kind, holding the kind's plugin contract.

    Differences from fvcore's: plugins are registered under an explicit name;
    duplicate names fail naming both registration sites; unknown names fail
    listing the registered names and the closest match; ``build`` creates a
    plugin from a ``{NAME, PARAMS}`` spec after checking PARAMS against the
    plugin's signature, passes exactly the declared build ``context`` and checks
    the result against ``returns``.

    Args:
        kind: the plugin kind in words (``"loss"``, ``"data source"``); names the
            ``register_<kind>``/``build_<kind>`` functions and the error messages.
        doc: what plugins of this kind are for; the plugin-contract section is
            appended to it from ``context`` and ``returns``.
        context: the keyword arguments the framework passes at build time, as
            ``(name, meaning)`` pairs or :class:`ContextArg`.
        returns: what a built plugin must be (:class:`Returns`), checked by ``build``.
    """

    def __init__(self, kind: str, doc: str = "", context: Sequence[ContextSpec] = (), returns: Optional[Returns] = None) -> None:
        super().__init__(kind.upper().replace(" ", "_"))
        self.kind = kind
        self.plural = kind + ("es" if kind.endswith("s") else "s")
        self.context: Tuple[ContextArg, ...] = context_args(context)
        self.returns = returns
        self.__doc__ = f"{inspect.cleandoc(doc)}\n\n{self.contract_doc()}" if doc else self.contract_doc()
        self._sites: Dict[str, str] = {}
        # Former names that still build their plugin: alias -> current name.
        self._aliases: Dict[str, str] = {}
        self._warned_aliases: set = set()

    @property
    def context_names(self) -> Tuple[str, ...]:
        """Names of the build-context arguments, in declaration order."""
        return tuple(a.name for a in self.context)

    def contract_doc(self) -> str:
        """The plugin-contract section of this registry's docstring (written from the declaration)."""
        return contract_docstring(self.kind, self.context, self.returns)

    # ----------------------------------------------------------- registration
    def _do_register(self, name: str, obj: Any, site: Optional[str] = None) -> None:
        site = site or _definition_site(obj)
        if name in self._aliases:
            raise DuplicateNameError(
                f"Cannot register {self.kind} {name!r} at {site}: that name is kept as the former name of "
                f"{self._aliases[name]!r}. Pick another name."
            )
        existing = self._obj_map.get(name)
        if existing is not None:
            if existing is obj:
                return
            raise DuplicateNameError(
                f"Cannot register {self.kind} {name!r} at {site}: that name is already registered "
                f"at {self._sites.get(name, '<unknown>')} ({existing!r}). Pick another name."
            )
        self._obj_map[name] = obj
        self._sites[name] = site

    def register(self, obj: Any = None, name: Optional[str] = None) -> Any:  # type: ignore[override]
        """Register ``obj`` under ``name`` (default: its ``__name__``); without ``obj``, return a decorator.

        fvcore's signature, kept for code written against it; plugins use ``register_<kind>(name)``.
        """
        if obj is None:
            return self.decorator()(name) if name else self.decorator()
        self._do_register(name or obj.__name__, obj)
        return obj

    def add_alias(self, alias: str, name: str) -> None:
        """Keep ``alias``, a plugin's former name, building the plugin now registered as ``name``.

        Configs written with the old name keep working; the first look-up of the old name logs
        that it changed, so users can move to the new one at their pace.
        """
        if not isinstance(alias, str) or not alias:
            raise RegistryError(f"A {self.kind} alias must be a non-empty string, got {alias!r}")
        if alias in self._obj_map or self._aliases.get(alias, name) != name:
            raise DuplicateNameError(f"Cannot keep {alias!r} as a former name of {self.kind} {name!r}: it already names "
                                     f"{self._aliases.get(alias) or 'another ' + self.kind!r}.")
        self._aliases[alias] = name

    def aliases(self) -> Dict[str, str]:
        """Former names that still build a plugin: ``{former name: current name}``."""
        ensure_builtin_plugins()
        return dict(self._aliases)

    def current_name(self, name: str) -> str:
        """``name``, or the current name of the plugin it formerly named (logged once per former name)."""
        current = self._aliases.get(name)
        if current is None:
            return name
        if name not in self._warned_aliases:
            self._warned_aliases.add(name)
            logger.warning("%s %r is now called %r; the old name still works, but configs should use the new one.",
                           self.kind, name, current)
        return current

    def decorator(self, after: Optional[Callable[[str, Any], None]] = None) -> Callable:
        """Return ``register_<kind>(name, aliases=())``, the decorator plugins use."""

        def register_named(name: str, aliases: Sequence[str] = ()) -> Callable:
            if not isinstance(name, str) or not name:
                raise RegistryError(f"register_{self.kind.replace(' ', '_')}() needs a non-empty name string, got {name!r}")
            site = _caller_site(2)

            def deco(obj: Any) -> Any:
                self._do_register(name, obj, site=site)
                for alias in aliases:
                    self.add_alias(alias, name)
                if after is not None:
                    after(name, obj)
                return obj

            return deco

        register_named.__doc__ = f"Register a {self.kind} plugin under ``name``.\n\n{self.__doc__ or ''}"
        register_named.__name__ = f"register_{self.kind.replace(' ', '_')}"
        return register_named

    # ---------------------------------------------------------------- look-up
    def names(self):
        """The registered names, sorted (built-in plugins are imported first)."""
        ensure_builtin_plugins()
        return sorted(self._obj_map)

    def __contains__(self, name: str) -> bool:
        ensure_builtin_plugins()
        return name in self._obj_map or name in self._aliases

    def get(self, name: str) -> Any:
        """The plugin registered under ``name``; UnknownNameError lists the known names and the closest one."""
        ensure_builtin_plugins()
        name = self.current_name(name)
        obj = self._obj_map.get(name)
        if obj is None:
            known = sorted(self._obj_map)
            guess = closest_match(name, known + sorted(self._aliases))
            hint = ""
            if guess in self._aliases:
                hint = f" Did you mean {guess!r} (now called {self._aliases[guess]!r})?"
            elif guess:
                hint = f" Did you mean {guess!r}?"
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{hint} Registered {self.plural}: {', '.join(known) or '(none)'}. "
                f"A third-party plugin must be imported first: list its module under PLUGINS: in the config "
                f"or declare the 'ssl_ext.plugins' entry point."
            )
        return obj

    def remove(self, name: str) -> Any:
        """Unregister ``name`` and return its plugin (for tests and interactive sessions that re-register)."""
        self._sites.pop(name, None)
        return self._obj_map.pop(name)

    def site(self, name: str) -> str:
        """``file:line`` where ``name`` was registered (shown in duplicate-name and contract errors)."""
        return self._sites.get(name, "<unknown>")

    # ---------------------------------------------------------------- building
    def check_params(self, name: str, params: Mapping[str, Any], context: Optional[Mapping[str, Any]] = None) -> None:
        """Check ``params`` against the plugin's signature; raise naming the bad key.

        ``context`` defaults to the declared build context (names the framework sets).
        """
        if context is None:
            context = dict.fromkeys(self.context_names)
        check_params_against(self.get(name), f"{self.kind} {name!r}", params, context)

    def check_context(self, context: Mapping[str, Any]) -> None:
        """Raise unless ``context`` names exactly the declared build-context arguments."""
        given, declared = set(context), set(self.context_names)
        if given != declared:
            raise PluginContractError(
                f"build_{self.kind.replace(' ', '_')} was called with context {sorted(given)}, but the {self.kind} "
                f"registry declares {sorted(declared)}; pass exactly the declared arguments."
            )

    def check_returned(self, name: str, obj: Any) -> Any:
        """Return ``obj`` if it keeps the kind's contract, else raise naming the plugin and its site."""
        problem = self.returns.problem(obj) if self.returns is not None else None
        if problem:
            raise PluginContractError(
                f"{self.kind} {name!r} (registered at {self.site(name)}) broke the {self.kind} contract: {problem}. "
                f"A {self.kind} must return {self.returns.describe()}"
            )
        return obj

    def build(self, spec: Any, **context: Any) -> Any:
        """Create a plugin from a spec (``name`` or ``{NAME, PARAMS}``) plus the declared build context."""
        self.check_context(context)
        name, params = spec_name_and_params(spec)
        obj = self.get(name)
        name = self.current_name(name)
        self.check_params(name, params, context)
        return self.check_returned(name, build(obj, params, context))


def _signature_target(obj: Any) -> Callable:
    return obj.__init__ if inspect.isclass(obj) else obj


def plugin_signature(obj: Any) -> inspect.Signature:
    """The signature a plugin is called with: ``__init__`` without ``self`` for a class, else the callable's."""
    sig = inspect.signature(_signature_target(obj))
    params = [p for n, p in sig.parameters.items() if n != "self"]
    return sig.replace(parameters=params)


def check_params_against(obj: Any, what: str, params: Mapping[str, Any], context: Mapping[str, Any] = ()) -> None:
    """Raise PluginParamsError when ``params`` do not fit ``obj``'s signature once ``context`` is added.

    A key the framework sets (in ``context``), a key the plugin does not take (with the
    closest parameter name) and a required parameter nobody sets are each named. A
    plugin taking ``**kwargs`` accepts any key.
    """
    try:
        sig = plugin_signature(obj)
    except (TypeError, ValueError):
        return
    accepted = {
        n: p for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    user_settable = sorted(n for n in accepted if n not in context)
    if not has_var_kw:
        for key in params:
            if key in context:
                raise PluginParamsError(
                    f"{what}: {key!r} is set by the framework when it builds the plugin, not under PARAMS; "
                    f"remove it from PARAMS."
                )
            if key not in accepted:
                guess = closest_match(key, user_settable)
                hint = f" Did you mean {guess!r}?" if guess else ""
                raise PluginParamsError(
                    f"{what} has no parameter {key!r}.{hint} Its parameters are: {', '.join(user_settable) or '(none)'}."
                )
    missing = [
        n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in params and n not in context
    ]
    if missing:
        raise PluginParamsError(f"{what} needs a value for {', '.join(map(repr, missing))}: set it under PARAMS.")


def _has_own_from_config(obj: Any) -> bool:
    fc = getattr(obj, "from_config", None)
    if fc is None or not inspect.isclass(obj):
        return False
    # Classy Vision's ClassyLoss.from_config is abstract (raises NotImplementedError).
    for klass in obj.__mro__:
        if "from_config" in klass.__dict__:
            return not (klass.__module__.startswith("classy_vision") and klass.__name__ == "ClassyLoss")
    return False


def build(obj: Any, params: Mapping[str, Any], context: Mapping[str, Any] = ()) -> Any:
    """Instantiate plugin ``obj`` with ``params`` and build-time ``context``."""
    kwargs = {**dict(params), **dict(context)}
    if _has_own_from_config(obj):
        return obj.from_config(kwargs)
    return obj(**kwargs)

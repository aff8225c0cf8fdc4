"""The errors registries raise. Each message says what went wrong and what to do."""


class RegistryError(Exception):
    """Base class of the errors raised by registries and plugin discovery."""


class DuplicateNameError(RegistryError, ValueError):
    """A second plugin was registered under a name already taken in the same registry."""


class UnknownNameError(RegistryError, KeyError):
    """A name that no plugin of the kind is registered under (the message lists the known names)."""

    def __str__(self) -> str:  # KeyError would repr() the message and hide the newlines
        return str(self.args[0]) if self.args else ""


class PluginParamsError(RegistryError, ValueError):
    """``PARAMS`` that the plugin's signature does not accept, or a required parameter left unset."""

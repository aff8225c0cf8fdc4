from ssl_ext.errors import UserError


class ConfigError(UserError, ValueError):
    """A config problem the user can fix; the message names the file/key/value and the fix."""

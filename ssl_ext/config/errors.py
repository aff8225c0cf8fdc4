class ConfigError(ValueError):
    """A config problem the user can fix; the message names the file/key/value and the fix."""

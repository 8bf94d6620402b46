"""The plugin registry's HTTP routes (``/wheels``…); see :func:`.routes.install_plugin_registry`."""

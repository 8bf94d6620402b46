"""Built-in plugins: pyoco-server's default behaviour, each replaceable by a team's plugin."""

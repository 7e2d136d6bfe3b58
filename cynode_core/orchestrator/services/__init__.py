"""Domain logic the API blueprints call; nothing here imports Flask."""

"""``cynode completion SHELL``: the shell completion script, to source or install.

``eval "$(cynode completion bash)"`` in ``~/.bashrc`` (``zsh``: in
``~/.zshrc``; ``fish``: ``cynode completion fish > ~/.config/fish/completions/cynode.fish``)
completes commands and options; click answers the completion requests.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script of SHELL (bash, zsh or fish)."""
    from cynode_core.cli import main

    script = get_completion_class(shell)
    assert script is not None
    click.echo(script(main, {}, "cynode", "_CYNODE_COMPLETE").source())


COMMANDS = (completion,)

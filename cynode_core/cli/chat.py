"""``cynode chat`` and ``cynode models list``: talking to the cluster from a terminal.

``cynode chat`` is interactive: it prints the answer's tokens as they come,
keeps the conversation in the server's thread, and understands ``/models``,
``/model NAME``, ``/new`` and ``/exit``; ``-m TEXT`` asks once and exits.
"""

from __future__ import annotations

import sys

import click

from cynode_core.chat_client import PM_MODEL, ChatClient
from cynode_core.cli.gateway import _client, _run, url_option
from cynode_core.client import ApiError

HELP = "/models  list models   /model NAME  switch   /new  new conversation   /exit  quit"


def _answer(chat: ChatClient, text: str) -> None:
    waiting = False
    for event in chat.stream(text):
        if event.kind == "waiting":
            click.echo(f"\r(waiting for the model: {event.seconds} s)", nl=False, err=True)
            waiting = True
            continue
        if waiting:
            click.echo("\r" + " " * 40 + "\r", nl=False, err=True)
            waiting = False
        if event.kind == "text":
            click.echo(event.text, nl=False)
            sys.stdout.flush()
        elif event.kind == "tool":
            click.echo(f"[calling {event.text}]", err=True)
        elif event.kind == "tool_result":
            click.echo(f"[result {event.text}]", err=True)
        elif event.kind == "amended":
            click.echo("\n[the answer was corrected: secrets were redacted]\n" + event.text, nl=False)
    click.echo()


def _command(chat: ChatClient, line: str) -> bool:
    """Run a ``/`` command; False when it is ``/exit``."""
    word, _, rest = line.partition(" ")
    if word in ("/exit", "/quit"):
        return False
    if word == "/models":
        for name in chat.models():
            click.echo(("* " if name == chat.model else "  ") + name)
    elif word == "/model" and rest.strip():
        chat.model = rest.strip()
        click.echo(f"model: {chat.model}")
    elif word == "/new":
        click.echo(f"new conversation {chat.new_thread()}")
    else:
        click.echo(HELP)
    return True


@click.command()
@url_option
@click.option("--message", "-m", default=None, help="ask once, print the answer, exit")
@click.option("--model", default=PM_MODEL, show_default=True, help="a model of `cynode models list`")
@click.option("--thread", "thread_id", default=None, help="continue this thread (default: the active one)")
@click.option("--new", "new_thread", is_flag=True, help="start a new conversation")
def chat(url: str | None, message: str | None, model: str, thread_id: str | None, new_thread: bool) -> None:
    """Chat with the cluster (the project manager by default), tokens shown as they come."""
    session = ChatClient(_client(url), model=model, thread_id=thread_id)
    if new_thread:
        _run(session.new_thread)
    if message is not None:
        _run(lambda: _answer(session, message))
        return
    click.echo(f"chatting with {model}; {HELP}", err=True)
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False).strip()
        except (EOFError, click.Abort):
            click.echo()
            return
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not _command(session, line):
                    return
                continue
            _answer(session, line)
        except ApiError as exc:
            click.echo(f"error: {exc}", err=True)
        except KeyboardInterrupt:
            click.echo("\n(answer stopped)", err=True)


@click.group()
def models() -> None:
    """The models you may chat with."""


@models.command("list")
@url_option
def models_list(url: str | None) -> None:
    """List the chat models: cynodeai.pm, then what the ready nodes serve."""
    for name in _run(lambda: ChatClient(_client(url)).models()):
        click.echo(name)


COMMANDS = (chat, models)

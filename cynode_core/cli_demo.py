"""``cynode demo``: bring the system up on the embedded defaults and show a real result."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import requests

from cynode_core.cli import main, orchestrator_settings


def wait_http(url: str, *, timeout: float, proc: subprocess.Popen | None = None, what: str = "service") -> None:
    """Poll ``url`` until it answers 200, showing progress; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    spinner = "|/-\\"
    i = 0
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(f"{what} exited with code {proc.returncode} while starting")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                click.echo(f"\r{what}: up" + " " * 10, err=True)
                return
        except requests.RequestException:
            pass
        click.echo(f"\rwaiting for {what} {spinner[i % 4]}", nl=False, err=True)
        i += 1
        time.sleep(0.25)
    raise click.ClickException(f"{what} did not answer {url} within {timeout:.0f} s")


def admin_password(home: Path) -> str:
    password = os.environ.get("CYNODE_ADMIN_PASSWORD") or os.environ.get("BOOTSTRAP_ADMIN_PASSWORD")
    if password:
        return password
    return (home / "admin-password").read_text().strip()


@main.command()
@click.option("--keep-running", is_flag=True, help="leave the orchestrator running after the demo")
def demo(keep_running: bool) -> None:
    """Start the orchestrator on embedded PostgreSQL, log in as admin and show /v1/users/me."""
    settings = orchestrator_settings()
    gateway = f"http://{settings.gateway_listen.replace('0.0.0.0', '127.0.0.1')}"
    click.echo(f"==> starting the orchestrator (state in {settings.home})", err=True)
    proc = subprocess.Popen([sys.executable, "-m", "cynode_core", "orchestrator", "serve"])
    try:
        wait_http(f"{gateway}/healthz", timeout=60, proc=proc, what="orchestrator")
        click.echo("==> logging in as admin", err=True)
        resp = requests.post(f"{gateway}/v1/auth/login", json={"handle": "admin", "password": admin_password(settings.home)}, timeout=10)
        if resp.status_code != 200:
            raise click.ClickException(f"login failed: {resp.status_code} {resp.text}")
        token = resp.json()["access_token"]
        me = requests.get(f"{gateway}/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        click.echo("==> GET /v1/users/me", err=True)
        click.echo(me.text.strip())
        ready = requests.get(f"{gateway}/readyz", timeout=10)
        click.echo(f"==> GET /readyz: {ready.status_code}", err=True)
        click.echo(ready.text.strip(), err=True)
        if keep_running:
            click.echo(f"orchestrator left running (pid {proc.pid})", err=True)
            return
    finally:
        if not keep_running:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

"""``cynode artifact ...`` and ``cynode task artifacts``: files in and out of the cluster, progress on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import click

from cynode_core.artifact_client import Progress, download, upload
from cynode_core.cli.common import print_table
from cynode_core.cli.gateway import _client, _emit, _run, json_option, task, url_option


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal (else nothing): what was sent or received so far."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


@click.group()
def artifact() -> None:
    """Store, fetch, list and delete files (artifacts)."""


@artifact.command("put")
@url_option
@json_option
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--path", "logical", default=None, help="its path in the store (default: the file's name)")
@click.option("--project", default=None, help="store it in this project (default: your own files)")
def artifact_put(url: str | None, as_json: bool, source: Path, logical: str | None, project: str | None) -> None:
    """Upload a file as a new artifact."""
    params: dict[str, Any] = {"path": logical or source.name}
    params |= {"scope_level": "project", "project_id": project} if project else {"scope_level": "user"}
    client = _client(url)
    with progress_bar(f"upload {source.name}", source.stat().st_size) as progress:
        created = _run(lambda: upload(client, source, params, progress))
    _emit(created, as_json, f"artifact {created['artifact_id']} ({created['path']}, {created['size_bytes']} bytes)")


@artifact.command("get")
@url_option
@click.argument("artifact_id")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="file to write")
def artifact_get(url: str | None, artifact_id: str, output: Path | None) -> None:
    """Download an artifact (its checksum is verified before the file appears)."""
    client = _client(url)
    meta = _run(lambda: client.call("GET", f"/v1/artifacts/{artifact_id}/metadata"))
    target = output or Path(PurePosixPath(meta["path"]).name or artifact_id)
    with progress_bar(f"download {target.name}", meta["size_bytes"]) as progress:
        checksum = _run(lambda: download(client, artifact_id, target, progress))
    click.echo(f"{target} ({target.stat().st_size} bytes, sha256 {checksum} verified)")


@artifact.command("show")
@url_option
@json_option
@click.argument("artifact_id")
def artifact_show(url: str | None, as_json: bool, artifact_id: str) -> None:
    """An artifact's metadata: path, size, type, checksum, the task and job it came from."""
    meta = _run(lambda: _client(url).call("GET", f"/v1/artifacts/{artifact_id}/metadata"))
    _emit(meta, as_json, "\n".join(f"{key}: {value}" for key, value in meta.items()))


@artifact.command("ls")
@url_option
@json_option
@click.option("--task", "task_id", default=None, help="only a task's outputs")
@click.option("--project", default=None, help="a project's artifacts (default: your own)")
@click.option("--limit", default=50, show_default=True)
def artifact_ls(url: str | None, as_json: bool, task_id: str | None, project: str | None, limit: int) -> None:
    """List artifacts, newest first."""
    params: dict[str, Any] = {"limit": limit}
    params |= {"scope_level": "project", "project_id": project} if project else {"scope_level": "user"}
    if task_id:
        params["correlation_task_id"] = task_id
    data = _run(lambda: _client(url).call("GET", "/v1/artifacts", params=params))
    _show(data, as_json)


@artifact.command("rm")
@url_option
@click.argument("artifact_id")
def artifact_rm(url: str | None, artifact_id: str) -> None:
    """Delete an artifact."""
    _run(lambda: _client(url).call("DELETE", f"/v1/artifacts/{artifact_id}"))
    click.echo(f"artifact {artifact_id} deleted")


@task.command("artifacts")
@url_option
@json_option
@click.argument("task_ref")
def task_artifacts(url: str | None, as_json: bool, task_ref: str) -> None:
    """List the files a task's job gave back (stored as artifacts of the task's project)."""
    client = _client(url)
    found = _run(lambda: client.call("GET", f"/v1/tasks/{task_ref}"))
    params = {"scope_level": "project", "project_id": found["project_id"], "correlation_task_id": found["id"]}
    _show(_run(lambda: client.call("GET", "/v1/artifacts", params={**params, "limit": 200})), as_json)


def _show(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(data, True, "")
        return
    print_table(
        ("ID", "PATH", "BYTES", "TYPE", "CREATED"),
        [(a["artifact_id"], a["path"], a["size_bytes"], a["content_type"], a["created_at"]) for a in data["artifacts"]],
    )


COMMANDS = (artifact,)

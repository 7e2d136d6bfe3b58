"""Steps of features/worker_node/sandbox_constraints.feature: jobs through a real Worker API into real Podman.

Only 127.0.0.1 is ever contacted; that nothing beyond it is reachable is
proved from inside the sandbox (its interfaces and routes).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from harness.loopback import RecordingListener
from node_helpers import (
    CONFIG_TOKEN,
    WORKER_TOKEN,
    ContainerRecords,
    WorkerFactory,
    containers_of,
    make_settings,
    run_in_thread,
    start_node_process,
)
from pytest_bdd import given, parsers, scenarios, then, when
from stub_orchestrator import REPORT_PATH, StubOrchestrator

from cynode_core.contract import InferenceBackend, SandboxRuntime
from node_agent.settings import NodeSettings

scenarios("worker_node/sandbox_constraints.feature")

WAIT = 30.0  # the longest any step waits for a job or a process
PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9 ]*)>")
SECRET_NAME = re.compile(r"DATABASE|DB_URL|JWT|PSK|API_KEY|APIKEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
# Files Podman writes for each container itself and mounts read-only; not host files.
PODMAN_GENERATED_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"}
# cgroup v1 shows "no memory limit" as the largest page-aligned 64-bit value.
UNLIMITED_V1_MEMORY = 2**62


@pytest.fixture
def listener() -> Iterator[RecordingListener]:
    """L: a TCP listener on the host's 127.0.0.1 that counts the connections it accepts."""
    recording = RecordingListener()
    yield recording
    recording.close()


# -- helpers -------------------------------------------------------------------------


def named_id(ctx: dict[str, Any], name: str) -> str:
    """The fresh UUID a scenario's ``<name>`` stands for."""
    return ctx.setdefault("ids", {}).setdefault(name, str(uuid.uuid4()))


def fill(ctx: dict[str, Any], text: str) -> str:
    """``text`` with each ``<T9>``-style name replaced by its UUID and ``<state dir>``/``<host marker>`` by paths."""
    paths = {"state dir": str(ctx["worker"].settings.resolved_state_dir), "host marker": ctx.get("marker", "")}
    return PLACEHOLDER.sub(lambda m: paths.get(m.group(1)) or named_id(ctx, m.group(1)), text)


def unescape(text: str) -> str:
    return json.loads(f'"{text}"')


def quoted(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def run_job(
    ctx: dict[str, Any], command: list[str], *, task: str | None = None, job: str | None = None, **sandbox: Any
) -> dict[str, Any]:
    """POST one job (version 1, the bearer token, fresh ids unless named); the result lands in ``ctx``."""
    task_id = named_id(ctx, task) if task else str(uuid.uuid4())
    job_id = named_id(ctx, job) if job else str(uuid.uuid4())
    body = {"version": 1, "task_id": task_id, "job_id": job_id, "sandbox": {"command": command, **sandbox}}
    url, token = ctx["api"]
    began = time.monotonic()
    resp = requests.post(
        f"{url}/v1/worker/jobs:run", json=body, timeout=120, headers={"Authorization": f"Bearer {token}"}
    )
    ctx.update(elapsed=time.monotonic() - began, job_id=job_id, task_id=task_id)
    assert resp.status_code == 200, resp.text
    ctx["result"] = resp.json()
    return ctx["result"]


def stdout(ctx: dict[str, Any]) -> str:
    return str(ctx["result"]["stdout"])


def secret_values(ctx: dict[str, Any]) -> list[str]:
    settings: NodeSettings = ctx["worker"].settings
    return [value for value in (settings.node_psk, WORKER_TOKEN, *ctx.get("secrets", {}).values()) if value]


def cgroup_dir(runtime: SandboxRuntime, container_id: str, controller: str) -> Path | None:
    """The host directory of a running container's cgroup for ``controller`` (cgroup v1 or v2)."""
    pid = runtime.client.containers.get(container_id).attrs["State"]["Pid"]  # type: ignore[attr-defined]
    if not pid:
        return None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path("/sys/fs/cgroup") / path.lstrip("/")
    return None


# -- background ---------------------------------------------------------------------------


@given(
    "the Worker API is running with a real container runtime, a 256 KiB output cap and a host-side TCP "
    "listener L on the host"
)
def worker_api(
    ctx: dict[str, Any],
    start_worker: WorkerFactory,
    podman_runtime: SandboxRuntime,
    listener: RecordingListener,
    container_records: ContainerRecords,
) -> None:
    worker = start_worker(keep_workspaces=True)
    assert worker.settings.max_output_bytes == 256 * 1024
    ctx.update(
        worker=worker, runtime=podman_runtime, listener=listener, records=container_records, start_worker=start_worker
    )


@given('every job below is sent with bearer <worker_token>, "version" 1 and a fresh task_id and job_id')
def job_defaults(ctx: dict[str, Any]) -> None:
    ctx["api"] = (ctx["worker"].url, WORKER_TOKEN)


# -- running jobs ---------------------------------------------------------------------------


@when(
    parsers.re(
        r"^I run (?P<command>\[.*\]) as task <(?P<task>\w+)> job <(?P<job>\w+)>"
        r"( with sandbox.env (?P<env>\{.*\}))?$"
    )
)
def run_named(ctx: dict[str, Any], command: str, task: str, job: str, env: str | None) -> None:
    extra = {"env": json.loads(env)} if env else {}
    run_job(ctx, json.loads(command), task=task, job=job, **extra)


@when(parsers.re(r"^I run (?P<command>\[.*\])$"))
def run_plain(ctx: dict[str, Any], command: str) -> None:
    argv = json.loads(fill(ctx, command))
    if "process" in ctx:
        run_measured(ctx, argv)
    else:
        run_job(ctx, argv)


@when(parsers.re(r'^I run (?P<command>\[.*\]) with "timeout_seconds" (?P<timeout>\d+)$'))
def run_with_timeout(ctx: dict[str, Any], command: str, timeout: str) -> None:
    run_job(ctx, json.loads(command), timeout_seconds=int(timeout))


@then(parsers.parse('stdout starts with "{prefix}"'))
def starts_with(ctx: dict[str, Any], prefix: str) -> None:
    assert stdout(ctx).startswith(unescape(prefix)), stdout(ctx)[:300]


@then(parsers.re(r'^stdout contains (?P<items>".*")$'))
def contains(ctx: dict[str, Any], items: str) -> None:
    lines = stdout(ctx).splitlines()
    for item in quoted(items):
        expected = fill(ctx, item)
        assert expected in lines or expected in stdout(ctx), (expected, stdout(ctx)[:2000])


@then(parsers.parse('stdout does not contain "{text}"'))
def not_contains(ctx: dict[str, Any], text: str) -> None:
    assert text not in stdout(ctx)


@then(parsers.parse('the status is "{status}"'))
def status_is(ctx: dict[str, Any], status: str) -> None:
    assert ctx["result"]["status"] == status, ctx["result"]


@then(parsers.parse('stdout\'s first line is a number other than "0"'))
def first_line_number(ctx: dict[str, Any]) -> None:
    first = stdout(ctx).splitlines()[0]
    assert first.isdigit() and first != "0", first


@then(parsers.parse('stdout\'s first line is not "0"'))
def first_line_not_root(ctx: dict[str, Any]) -> None:
    assert stdout(ctx).splitlines()[0] != "0"


# -- secrets ---------------------------------------------------------------------------------


@given("the node's process environment holds every secret value")
def secrets_in_environment(ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    db_password = secrets.token_urlsafe(12)
    values = {
        "CYNODE_NODE_PSK": ctx["worker"].settings.node_psk or "",
        "CYNODE_WORKER_TOKEN": WORKER_TOKEN,
        "CYNODE_JWT_SECRET": secrets.token_urlsafe(40),
        "CYNODE_NODE_JWT": "eyJhbGciOiJIUzI1NiJ9." + secrets.token_urlsafe(24) + "." + secrets.token_urlsafe(16),
        "CYNODE_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "CYNODE_DATABASE_URL": f"postgresql://cynode:{db_password}@127.0.0.1:5432/cynode",
        "CYNODE_DB_PASSWORD": db_password,
        "CYNODE_API_KEY": "sk-" + secrets.token_urlsafe(20),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    ctx["secrets"] = values


@then("stdout contains none of the secret values")
def no_secret_values(ctx: dict[str, Any]) -> None:
    assert "CYNODE_TASK_ID=" in stdout(ctx)  # the listing did run
    for value in secret_values(ctx):
        assert value not in stdout(ctx)


@then("stdout has no variable naming a database URL, a JWT, a PSK or an API key")
def no_secret_names(ctx: dict[str, Any]) -> None:
    text = stdout(ctx).replace("\0", "\n")
    names = {line.split("=", 1)[0] for line in text.splitlines() if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line)}
    assert names and not {name for name in names if SECRET_NAME.search(name)}, names


# -- network ---------------------------------------------------------------------------------


@when(
    parsers.parse(
        'I run a job with "sandbox.network_policy" {policy} that tries to connect to L, to the node\'s '
        "Worker API port and to the inference port, and lists its interfaces and routes"
    )
)
def run_network_probe(ctx: dict[str, Any], real_backend: InferenceBackend, policy: str) -> None:
    ports = {
        "L": ctx["listener"].port,
        "worker": urlsplit(ctx["worker"].url).port,
        "inference": urlsplit(real_backend.base_url).port,
    }
    ctx["ports"] = ports
    script = "".join(
        f"nc -w 2 127.0.0.1 {port} </dev/null && echo connected-{name} || echo failed-{name}; "
        for name, port in ports.items()
    )
    script += (
        "echo interfaces: $(ls /sys/class/net); echo routes:; tail -n +2 /proc/net/route; "
        "echo routes6:; cat /proc/net/ipv6_route"
    )
    extra = {} if policy == "(field absent)" else {"network_policy": json.loads(policy)}
    run_job(ctx, ["sh", "-c", script], **extra)


@then("every attempt fails and L records no connection")
def attempts_fail(ctx: dict[str, Any]) -> None:
    out = stdout(ctx)
    for name in ctx["ports"]:
        assert f"failed-{name}" in out and f"connected-{name}" not in out, out
    assert ctx["listener"].connections == 0


@then("the only network interface inside the sandbox is loopback and it has no route to any other address")
def only_loopback(ctx: dict[str, Any]) -> None:
    out = stdout(ctx)
    assert "interfaces: lo\n" in out, out
    ipv4 = out.split("routes:\n", 1)[1].split("routes6:\n", 1)[0]
    assert ipv4.strip() == "", ipv4  # no IPv4 route at all, hence no default route
    for line in out.split("routes6:\n", 1)[1].splitlines():
        assert line.split()[-1] == "lo", line


# -- timeout and output ------------------------------------------------------------------------


@then(
    parsers.parse('the response arrives within {seconds:d} seconds with "status" "{status}" and "exit_code" {code:d}')
)
def arrives_with(ctx: dict[str, Any], seconds: int, status: str, code: int) -> None:
    assert ctx["elapsed"] < seconds
    assert (ctx["result"]["status"], ctx["result"]["exit_code"]) == (status, code)


@then('"stdout" holds whatever was captured ("start\\n" or "")')
def partial_output(ctx: dict[str, Any]) -> None:
    assert stdout(ctx) in ("start\n", "")


@then("no container for that job_id is left running or stopped on the node")
def no_leftover(ctx: dict[str, Any]) -> None:
    assert containers_of(ctx["runtime"], ctx["job_id"]) == []


@given("the Worker API runs in a node agent process of its own, so its resident memory can be measured")
def node_process(ctx: dict[str, Any], stub: StubOrchestrator, podman_socket_url: str, tmp_path: Path) -> Iterator[None]:
    proc, port = start_node_process(stub.url, tmp_path / "node-process", podman_socket_url)
    try:
        assert stub.wait_for(lambda: stub.calls_to("POST", REPORT_PATH), timeout=WAIT), proc.output
        ctx["api"] = (f"http://127.0.0.1:{port}", CONFIG_TOKEN)
        ctx["process"] = psutil.Process(proc.proc.pid)
        yield
    finally:
        proc.stop()


def run_measured(ctx: dict[str, Any], command: list[str]) -> None:
    """Run a job on the node process, sampling its resident memory every 20 ms meanwhile."""
    process: psutil.Process = ctx["process"]
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(process.memory_info().rss)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run_job(ctx, command)
    finally:
        done.set()
        sampler.join(5)
    ctx["rss"] = samples


@then(parsers.parse('the response arrives with "status" "{status}"'))
def arrives(ctx: dict[str, Any], status: str) -> None:
    assert ctx["result"]["status"] == status, ctx["result"]["stderr"][:500]


@then(parsers.parse('"stdout" is exactly {size:d} bytes of "a" and "truncated.stdout" is true'))
def capped_stdout(ctx: dict[str, Any], size: int) -> None:
    assert stdout(ctx) == "a" * size
    assert ctx["result"]["truncated"]["stdout"] is True


@then(parsers.parse('"stderr" is "{text}" and "truncated.stderr" is false'))
def small_stderr(ctx: dict[str, Any], text: str) -> None:
    assert ctx["result"]["stderr"] == unescape(text)
    assert ctx["result"]["truncated"]["stderr"] is False


@then(parsers.parse("the Worker API's resident memory stayed below {limit:d} MiB during the job"))
def memory_bounded(ctx: dict[str, Any], limit: int) -> None:
    samples = ctx["rss"]
    assert len(samples) >= 5, "the job ended before its memory could be sampled"
    assert max(samples) < limit * 1024 * 1024, f"peak RSS {max(samples) / 2**20:.0f} MiB"


@when('I run a job that prints 300000 bytes of the three-byte character "€"')
def run_euro(ctx: dict[str, Any]) -> None:
    run_job(ctx, ["sh", "-c", "yes '€' | head -n 100000 | tr -d '\\n'"])


@then('"stdout" is valid UTF-8, at most 262144 bytes long, and "truncated.stdout" is true')
def valid_utf8(ctx: dict[str, Any]) -> None:
    data = stdout(ctx).encode("utf-8")  # JSON carried text: it decoded, so it was valid UTF-8
    assert "\ufffd" not in stdout(ctx)
    assert len(data) <= 262144
    assert stdout(ctx) == "€" * (262144 // 3)  # whole characters only, as many as fit
    assert ctx["result"]["truncated"]["stdout"] is True


# -- workspaces and host files ----------------------------------------------------------------


@given(parsers.parse('job <Ja> wrote "{secret}" to /workspace/a.txt and finished, its workspace kept on the host'))
def job_a_wrote(ctx: dict[str, Any], secret: str) -> None:
    result = run_job(ctx, ["sh", "-c", f"echo {secret} > /workspace/a.txt"], job="Ja")
    assert result["status"] == "completed", result
    kept = ctx["worker"].workspace_root / named_id(ctx, "Ja") / "a.txt"
    assert kept.read_text() == f"{secret}\n"


@when(parsers.re(r"^job <(?P<job>\w+)> runs (?P<command>\[.*\])$"))
def job_b_runs(ctx: dict[str, Any], job: str, command: str) -> None:
    run_job(ctx, json.loads(command), job=job)


@then(parsers.parse('stdout does not contain "{secret}" and lists no "{name}"'))
def no_other_workspace(ctx: dict[str, Any], secret: str, name: str) -> None:
    assert secret not in stdout(ctx) and name not in stdout(ctx), stdout(ctx)


@pytest.fixture
def host_marker() -> Iterator[Path]:
    # A unique name, so concurrent runs on one host never share (or delete) each other's file.
    marker = Path(f"/etc/cynode-host-marker-{uuid.uuid4().hex[:8]}")
    yield marker
    marker.unlink(missing_ok=True)


@given(
    parsers.parse(
        'the host has a file "/etc/cynode-host-marker-<random>" containing "{content}" and the '
        "node's state dir holds its config"
    )
)
def host_files(ctx: dict[str, Any], host_marker: Path, content: str) -> None:
    host_marker.write_text(content)
    ctx["marker"] = str(host_marker)
    settings: NodeSettings = ctx["worker"].settings
    state = settings.resolved_state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / "config.yaml").write_text(f"node_psk: {settings.node_psk}\nworker_token: {WORKER_TOKEN}\n")


@then(parsers.parse('stdout does not contain "{text}" or any secret value'))
def no_host_file(ctx: dict[str, Any], text: str) -> None:
    assert "No such file or directory" in ctx["result"]["stderr"]  # the reads were tried
    assert text not in stdout(ctx)
    for value in secret_values(ctx):
        assert value not in stdout(ctx)
    assert "config.yaml" not in stdout(ctx)


@then("the only host bind mount listed is the job's own workspace at /workspace")
def only_workspace_mounted(ctx: dict[str, Any]) -> None:
    mounts = [line.split() for line in stdout(ctx).splitlines() if " on /" in line and " type " in line]
    by_target = {fields[2]: fields for fields in mounts}
    assert "/workspace" in by_target, stdout(ctx)
    host_device = by_target["/workspace"][0]
    from_host = {target: fields for target, fields in by_target.items() if fields[0] == host_device}
    # Besides the workspace, only the files Podman writes for each container itself (read-only).
    assert set(from_host) - {"/workspace"} <= PODMAN_GENERATED_FILES, from_host
    assert all(fields[5].startswith("(ro") for target, fields in from_host.items() if target != "/workspace")
    (record,) = ctx["records"].of(ctx["job_id"])
    binds = [(m["Source"], m["Destination"]) for m in record["Mounts"] if m["Type"] == "bind"]
    assert binds == [(str(ctx["worker"].workspace_root / ctx["job_id"]), "/workspace")]


# -- labels and the runtime's record -------------------------------------------------------------


@when(parsers.parse('I run a job "{command}" as task <{task}> job <{job}>'))
def run_in_background(ctx: dict[str, Any], command: str, task: str, job: str) -> None:
    ctx["call"] = run_in_thread(lambda: run_job(ctx, command.split(), task=task, job=job))


@then(
    parsers.parse(
        "while it runs the runtime lists a container with labels carrying task_id <{task}> and job_id <{job}>"
    )
)
def labelled_while_running(ctx: dict[str, Any], task: str, job: str) -> None:
    job_id, thread = named_id(ctx, job), ctx["call"][0]
    client = ctx["runtime"].client
    deadline = time.monotonic() + WAIT
    while not (found := client.containers.list(filters={"label": f"cynodeai.job_id={job_id}"})):
        assert time.monotonic() < deadline, "the job's container never appeared"
        time.sleep(0.05)
    assert thread.is_alive(), "the job had already ended"
    labels = found[0].attrs["Labels"]
    assert (labels["cynodeai.task_id"], labels["cynodeai.job_id"]) == (named_id(ctx, task), job_id)


@then("after the response no container with that job_id remains")
def removed_after(ctx: dict[str, Any]) -> None:
    thread, box = ctx["call"]
    thread.join(WAIT)
    assert not thread.is_alive() and box["result"]["status"] == "completed", box
    assert containers_of(ctx["runtime"], ctx["job_id"]) == []


@then("the runtime's record of the container shows a read-only root filesystem and a non-root user")
def record_read_only(ctx: dict[str, Any]) -> None:
    (record,) = ctx["records"].of(ctx["job_id"])
    assert record["HostConfig"]["ReadonlyRootfs"] is True
    user = record["Config"]["User"]
    assert user and user.split(":")[0] not in ("", "0", "root"), user


@then(parsers.parse('"CapPrm", "CapEff" and "CapBnd" are all {value}'))
def no_capabilities(ctx: dict[str, Any], value: str) -> None:
    fields = dict(line.split(":\t", 1) for line in stdout(ctx).splitlines() if ":\t" in line)
    assert (fields["CapPrm"], fields["CapEff"], fields["CapBnd"]) == (value, value, value), fields
    ctx["status_fields"] = fields


@then(parsers.parse('"NoNewPrivs" is {value}'))
def no_new_privs(ctx: dict[str, Any], value: str) -> None:
    assert ctx["status_fields"]["NoNewPrivs"] == value


@then(
    "the runtime's record of the container shows no added capability, no privileged mode and the "
    "no-new-privileges option"
)
def record_unprivileged(ctx: dict[str, Any]) -> None:
    (record,) = ctx["records"].of(ctx["job_id"])
    host = record["HostConfig"]
    assert not host["CapAdd"] and host["Privileged"] is False
    assert "no-new-privileges" in host["SecurityOpt"]


# -- limits ------------------------------------------------------------------------------------------


@given("the node runs with its default sandbox limits")
def default_limits(ctx: dict[str, Any], tmp_path: Path) -> None:
    defaults = make_settings(tmp_path / "defaults")
    settings: NodeSettings = ctx["worker"].settings
    assert (settings.sandbox_pids, settings.sandbox_memory) == (defaults.sandbox_pids, defaults.sandbox_memory)
    assert settings.sandbox_pids > 0 and settings.sandbox_memory


@when(parsers.re(r'^I run a fork bomb (?P<command>\[.*\]) with "timeout_seconds" (?P<timeout>\d+)$'))
def run_fork_bomb(ctx: dict[str, Any], command: str, timeout: str) -> None:
    job = "bomb"
    job_id, runtime = named_id(ctx, job), ctx["runtime"]
    pids: list[int] = []
    health: list[int] = []
    host_ok: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        counter: Path | None = None
        while not done.is_set():
            try:
                if counter is None:
                    ids = containers_of(runtime, job_id)
                    directory = cgroup_dir(runtime, ids[0], "pids") if ids else None
                    if directory is not None:
                        ctx.update(bomb_container=ids[0], bomb_cgroup=directory)
                        counter = directory / "pids.current"
                else:
                    pids.append(int(counter.read_text()))
            except (OSError, ValueError, IndexError, requests.RequestException):
                pass  # the container is not there yet, or is already gone
            done.wait(0.02)

    def healthz() -> int:
        try:
            return requests.get(f"{ctx['worker'].url}/healthz", timeout=5).status_code
        except requests.RequestException:
            return -1

    def start_process() -> bool:
        try:
            return subprocess.run(["true"], timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def keep_sampling(probe: Callable[[], Any], into: list[Any]) -> Callable[[], None]:
        # Once at the start, every 0.1 s, and once more when the job is over: a bomb whose last fork
        # fails can end the job in well under a second, and still gets a sample at each end.
        def loop() -> None:
            while True:
                ended = done.is_set()
                into.append(probe())
                if ended:
                    return
                done.wait(0.1)

        return loop

    # Separate loops: on a loaded host a slow process start must not thin out the health checks.
    watchers = [
        threading.Thread(target=f, daemon=True)
        for f in (watch, keep_sampling(healthz, health), keep_sampling(start_process, host_ok))
    ]
    for thread in watchers:
        thread.start()
    try:
        run_job(ctx, json.loads(command), job=job, timeout_seconds=int(timeout))
    finally:
        done.set()
        for thread in watchers:
            thread.join(10)
    ctx.update(pids=pids, health=health, host_ok=host_ok)


@then(parsers.parse('the response arrives within {seconds:d} seconds with "status" "failed" or "timeout"'))
def bomb_ended(ctx: dict[str, Any], seconds: int) -> None:
    assert ctx["elapsed"] < seconds
    assert ctx["result"]["status"] in ("failed", "timeout"), ctx["result"]


@then("the container's process count never exceeded the configured pids limit")
def pids_bounded(ctx: dict[str, Any]) -> None:
    limit = ctx["worker"].settings.sandbox_pids
    assert ctx["pids"], "the container's process count was never sampled"
    assert max(ctx["pids"]) <= limit, max(ctx["pids"])
    # The bomb did run into the limit: forks were refused.
    assert "can't fork" in ctx["result"]["stderr"] or max(ctx["pids"]) >= limit * 0.9, max(ctx["pids"])


@then("during the job the Worker API /healthz kept answering 200 and the host could still start processes")
def host_fine(ctx: dict[str, Any]) -> None:
    assert len(ctx["health"]) >= 2 and set(ctx["health"]) == {200}, ctx["health"]
    assert ctx["host_ok"] and all(ctx["host_ok"])


@then("afterwards no process or container of that job remains on the node")
def bomb_gone(ctx: dict[str, Any]) -> None:
    assert containers_of(ctx["runtime"], ctx["job_id"]) == []
    container_id = ctx["bomb_container"]
    counter = ctx["bomb_cgroup"] / "pids.current"
    assert not counter.exists() or counter.read_text().strip() == "0"
    leftovers = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if container_id in (proc / "cgroup").read_text():
                leftovers.append(proc.name)
        except OSError:
            pass  # ended while we looked
    assert leftovers == []


@then(parsers.parse('a following "{command}" job completes normally'))
def following_job(ctx: dict[str, Any], command: str) -> None:
    result = run_job(ctx, command.split())
    assert (result["status"], result["stdout"]) == ("completed", "ok\n")


@given(parsers.parse("the node's sandbox limits are configured as {limits}"))
def configured_limits(ctx: dict[str, Any], limits: str) -> None:
    overrides = {
        "(not set, defaults)": {},
        "pids 64 and memory 256 MiB": {"sandbox_pids": 64, "sandbox_memory": "256m"},
        '"no limits"': {"sandbox_pids": 0, "sandbox_memory": ""},
    }[limits]
    worker = ctx["start_worker"](**overrides)
    ctx.update(worker=worker, api=(worker.url, WORKER_TOKEN))


@then(parsers.parse("stdout shows {shown}"))
def limits_shown(ctx: dict[str, Any], shown: str) -> None:
    pids, memory = stdout(ctx).split()
    if memory.isdigit() and int(memory) >= UNLIMITED_V1_MEMORY:
        memory = "max"
    settings: NodeSettings = ctx["worker"].settings
    if shown == "a finite pids limit and a finite memory limit":
        assert pids == str(settings.sandbox_pids) and int(pids) > 0
        assert memory == str(512 * 1024 * 1024) and settings.sandbox_memory == "512m"
    elif shown == '"max" for both':
        assert (pids, memory) == ("max", "max")
    else:
        assert [pids, memory] == quoted(shown)

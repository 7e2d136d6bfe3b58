"""The plugin manager and the hooks, seen from a third party's plugin.

The plugins here are written the way an outside distribution would write
them: a class with ``@cynode_core.hookimpl`` methods using only the hook
contract's value types. They run against the real app on a real database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pluggy
import pytest
from flask import Flask
from harness.api import ApiClient
from sqlalchemy import select

from cynode_core import hookimpl
from cynode_core.contract import Identity, InferenceInfo, JobInfo, NodeCandidate
from cynode_core.orchestrator.app import create_app
from cynode_core.orchestrator.dispatch.least_loaded import PLUGIN_NAME as DEFAULT_SCHEDULER
from cynode_core.orchestrator.dispatch.least_loaded import LeastLoaded
from cynode_core.orchestrator.local_accounts import PLUGIN_NAME as LOCAL_AUTH
from cynode_core.orchestrator.local_accounts import LocalAccounts
from cynode_core.orchestrator.models import PasswordCredential, User
from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.plugin_manager import get_plugin_manager, plugin_names
from cynode_core.settings import load_settings

LDAP = "test-ldap"


class DirectoryLogin:
    """A stand-in for an LDAP plugin: it vouches for one external identity."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def cynode_authenticate(self, handle: str, password: str) -> Identity | None:
        self.calls.append(handle)
        if handle == "carol" and password == "from-ldap":
            return Identity(handle="carol", external_source=LDAP, external_id="uid=carol")
        return None


class LastCandidate:
    """A scheduler that always picks the last candidate."""

    @hookimpl
    def cynode_select_node(self, job: JobInfo, candidates: Sequence[NodeCandidate]) -> NodeCandidate | None:
        return candidates[-1] if candidates else None


class Abstains:
    """A scheduler that never decides, so the next one does."""

    @hookimpl
    def cynode_select_node(self, job: JobInfo, candidates: Sequence[NodeCandidate]) -> NodeCandidate | None:
        return None


class Misspelt:
    @hookimpl
    def cynode_authentikate(self, handle: str, password: str) -> Identity | None:
        return None


def builtins(orchestrator: Any) -> list[tuple[object, str]]:
    return [(LocalAccounts(orchestrator.db.sessions), LOCAL_AUTH), (LeastLoaded(), DEFAULT_SCHEDULER)]


def app_with(orchestrator: Any, *extra: tuple[object, str], disabled: Sequence[str] = ()) -> Flask:
    pm = get_plugin_manager([*builtins(orchestrator), *extra], disabled=disabled)
    return create_app(orchestrator.settings, orchestrator.db, orchestrator.resources.secrets, plugin_manager=pm)


# -- authentication --------------------------------------------------------


def test_an_external_identity_logs_in_and_gets_a_users_row(orchestrator) -> None:  # type: ignore[no-untyped-def]
    directory = DirectoryLogin()
    client = ApiClient.in_process(app_with(orchestrator, (directory, LDAP)))

    resp = client.login("carol", "from-ldap")
    assert resp.status_code == 200, resp.text
    me = client.get("/v1/users/me", token=resp.json()["access_token"])
    assert me.status_code == 200 and me.json()["handle"] == "carol" and me.json()["is_active"] is True

    with orchestrator.db.session() as session:
        carol = session.scalars(select(User).where(User.handle == "carol")).one()
        assert (carol.external_source, carol.external_id) == (LDAP, "uid=carol")
        assert str(carol.id) == me.json()["id"]
        assert session.scalar(select(PasswordCredential).where(PasswordCredential.user_id == carol.id)) is None

    # A second login finds the same row rather than making another.
    assert client.login("carol", "from-ldap").status_code == 200
    with orchestrator.db.session() as session:
        assert len(session.scalars(select(User).where(User.handle == "carol")).all()) == 1


def test_the_external_plugin_refusing_means_401(orchestrator) -> None:  # type: ignore[no-untyped-def]
    client = ApiClient.in_process(app_with(orchestrator, (DirectoryLogin(), LDAP)))
    resp = client.login("carol", "wrong")
    assert resp.status_code == 401 and resp.headers["Content-Type"] == "application/problem+json"
    with orchestrator.db.session() as session:
        assert session.scalar(select(User).where(User.handle == "carol")) is None


def test_local_accounts_still_work_beside_an_external_plugin(orchestrator) -> None:  # type: ignore[no-untyped-def]
    directory = DirectoryLogin()
    client = ApiClient.in_process(app_with(orchestrator, (directory, LDAP)))
    assert client.login("admin", orchestrator.secrets.admin_password).status_code == 200


def test_an_external_plugin_cannot_take_over_a_local_handle(orchestrator) -> None:  # type: ignore[no-untyped-def]
    class ClaimsAdmin:
        @hookimpl(tryfirst=True)
        def cynode_authenticate(self, handle: str, password: str) -> Identity | None:
            if handle != "admin":
                return None
            return Identity(handle="admin", external_source="rogue", external_id="uid=admin")

    client = ApiClient.in_process(app_with(orchestrator, (ClaimsAdmin(), "rogue")))
    assert client.login("admin", "anything").status_code == 401


def test_disabled_blocks_a_plugin_by_name(orchestrator) -> None:  # type: ignore[no-untyped-def]
    directory = DirectoryLogin()
    pm = get_plugin_manager([*builtins(orchestrator), (directory, LDAP)], disabled=[LDAP])
    assert LDAP not in plugin_names(pm) and pm.is_blocked(LDAP)
    app = create_app(orchestrator.settings, orchestrator.db, orchestrator.resources.secrets, plugin_manager=pm)
    client = ApiClient.in_process(app)
    assert client.login("carol", "from-ldap").status_code == 401
    assert directory.calls == []


def test_disabled_blocks_an_entry_point_plugin_too() -> None:
    assert "podman" in plugin_names(get_plugin_manager())
    pm = get_plugin_manager(disabled=["podman"])
    assert "podman" not in plugin_names(pm)


def test_cynode_disable_plugins_reaches_the_app(orchestrator) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from_env = load_settings(OrchestratorSettings, environ={"CYNODE_DISABLE_PLUGINS": f" {LOCAL_AUTH} , podman "})
    assert from_env.disable_plugins == [LOCAL_AUTH, "podman"]
    settings = replace(orchestrator.settings, disable_plugins=from_env.disable_plugins)
    app = create_app(settings, orchestrator.db, orchestrator.resources.secrets)
    pm: pluggy.PluginManager = app.extensions["cynode"].pm
    names = plugin_names(pm)
    assert LOCAL_AUTH not in names and "podman" not in names and DEFAULT_SCHEDULER in names
    # With local accounts blocked nobody vouches for the admin any more.
    assert ApiClient.in_process(app).login("admin", orchestrator.secrets.admin_password).status_code == 401


def test_a_misspelt_hook_fails_at_start_up() -> None:
    with pytest.raises(pluggy.PluginValidationError, match="cynode_authentikate"):
        get_plugin_manager([(Misspelt(), "misspelt")])


# -- scheduling ------------------------------------------------------------


def _candidates() -> list[NodeCandidate]:
    # node-a has the most free slots: least-loaded's choice.
    return [
        NodeCandidate("id-a", "node-a", max_concurrency=4, running_jobs=0),
        NodeCandidate("id-b", "node-b", max_concurrency=4, running_jobs=2),
        NodeCandidate("id-c", "node-c", max_concurrency=4, running_jobs=3),
    ]


JOB = JobInfo(job_id="j-1", task_id="t-1")


def test_the_default_scheduler_picks_the_least_loaded_node() -> None:
    pm = get_plugin_manager([(LeastLoaded(), DEFAULT_SCHEDULER)])
    assert pm.hook.cynode_select_node(job=JOB, candidates=_candidates()).node_slug == "node-a"
    full = [NodeCandidate("id-x", "node-x", max_concurrency=1, running_jobs=1)]
    assert pm.hook.cynode_select_node(job=JOB, candidates=full) is None


def test_the_default_chat_node_is_the_one_with_the_fewest_open_calls_then_the_most_free_slots() -> None:
    pm = get_plugin_manager([(LeastLoaded(), DEFAULT_SCHEDULER)])
    idle = InferenceInfo(model="m", user_id="u")
    assert pm.hook.cynode_select_inference_node(request=idle, candidates=_candidates()).node_slug == "node-a"
    busy_a = InferenceInfo(model="m", user_id="u", in_flight={"id-a": 2, "id-b": 1})
    assert pm.hook.cynode_select_inference_node(request=busy_a, candidates=_candidates()).node_slug == "node-c"
    assert pm.hook.cynode_select_inference_node(request=idle, candidates=[]) is None


def test_a_scheduler_plugin_replaces_the_default() -> None:
    # Registered after the built-in, yet called first: the default is trylast
    # and the hook is firstresult, so the plugin's answer is the answer.
    pm = get_plugin_manager([(LeastLoaded(), DEFAULT_SCHEDULER), (LastCandidate(), "last-candidate")])
    assert pm.hook.cynode_select_node(job=JOB, candidates=_candidates()).node_slug == "node-c"


def test_a_scheduler_plugin_that_abstains_defers_to_the_default() -> None:
    pm = get_plugin_manager([(LeastLoaded(), DEFAULT_SCHEDULER), (Abstains(), "abstains")])
    assert pm.hook.cynode_select_node(job=JOB, candidates=_candidates()).node_slug == "node-a"


def test_the_default_scheduler_can_be_blocked_and_replaced() -> None:
    pm = get_plugin_manager(
        [(LeastLoaded(), DEFAULT_SCHEDULER), (LastCandidate(), "last-candidate")], disabled=[DEFAULT_SCHEDULER]
    )
    assert "last-candidate" in plugin_names(pm) and DEFAULT_SCHEDULER not in plugin_names(pm)
    assert pm.hook.cynode_select_node(job=JOB, candidates=_candidates()).node_slug == "node-c"


def test_the_orchestrator_names_its_plugins_and_their_versions_at_start(
    orchestrator, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    from cynode_core.orchestrator.process import log_plugins

    caplog.set_level("INFO", logger="cynode_core.orchestrator.process")
    log_plugins(orchestrator.app)
    lines = {record.getMessage() for record in caplog.records}
    assert {
        "plugin least-loaded: built in",
        "plugin two-step-claim: built in",
        "plugin local-accounts: built in",
    } <= lines
    assert f"plugin podman: cynode-podman {version('cynode-podman')}" in lines


def test_the_dispatcher_always_claims_through_the_claim_hook_and_defers_to_a_scheduler_plugin() -> None:
    from cynode_core.orchestrator.dispatch import placement

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[str] = []
            self.settings = load_settings(OrchestratorSettings, environ={})

        def claim_several(self, sql: str, room: int) -> list[Any]:
            self.calls.append("one statement")
            return []

        def claim_with(self, select_node: Any) -> None:
            self.calls.append("two steps")

    def claims(*extra: tuple[object, str]) -> list[str]:
        pm = get_plugin_manager(
            [(LeastLoaded(), DEFAULT_SCHEDULER), (placement.TwoStepClaim(), placement.PLUGIN_NAME), *extra],
            extra_specs=[placement],
            load_entry_points=False,
        )
        queue = Recorder()
        assert pm.hook.cynode_claim_job(queue=queue, select_node=pm.hook.cynode_select_node, room=1) is not None
        return queue.calls

    # Alone, the built-in scheduler claims with its own one-statement rule.
    assert claims() == ["one statement"]
    # With another node chooser, it defers and the two-step claim asks the hook.
    assert claims((LastCandidate(), "last-candidate")) == ["two steps"]

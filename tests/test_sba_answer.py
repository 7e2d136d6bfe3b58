"""A sandbox agent's answer as the orchestrator stores it (agents_contract.md 5.7): a blank ``stdout`` is replaced
by the runner's ``final_answer``; anything the job printed is kept as it is."""

from __future__ import annotations

from cynode_core.contract.job import RunJobResponse


def response(stdout: str | None, sba: object) -> RunJobResponse:
    body = {"version": 1, "status": "completed", "exit_code": 0, "sba_result": sba}
    if stdout is not None:
        body["stdout"] = stdout
    return RunJobResponse.from_json(body)


def test_a_blank_stdout_becomes_the_final_answer() -> None:
    for blank in (None, "", " \n"):
        stored = response(blank, {"status": "success", "final_answer": "Wrote hello.txt."}).with_final_answer()
        assert stored.stdout == "Wrote hello.txt." and stored.to_json()["stdout"] == "Wrote hello.txt."


def test_printed_output_and_answerless_results_are_kept() -> None:
    printed = response("the job's own words\n", {"final_answer": "other"})
    assert printed.with_final_answer() is printed
    for sba in ({"status": "failure"}, {"final_answer": "  "}, {"final_answer": 5}, "not an object", None):
        plain = response("", sba)
        assert plain.with_final_answer() is plain

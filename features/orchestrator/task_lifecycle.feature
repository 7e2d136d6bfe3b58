Feature: Task create, get, list, result, logs and cancel at the gateway
  Tasks are created, read, listed, filtered, read back with their results
  and logs, and canceled through the User API Gateway; the real dispatcher
  runs them on one node. Its "stub Worker API" is the node agent's real
  Worker API on loopback over a scripted sandbox runtime.
  ("Cancelling a running task stops its sandbox" needs a real container
  runtime: it lives in tests/e2e.)

  Background:
    Given the gateway and control plane are running with one dispatchable node behind a stub Worker API
    And users "alice" and "bob" exist and I am logged in as "alice"

  @REQ-ORCHES-0122 @REQ-ORCHES-0121 @REQ-ORCHES-0128 @REQ-ORCHES-0133 @REQ-USRGWY-0131 @phase1
  Scenario: Creating a command task returns a queued task owned by the caller
    Given no node is dispatchable
    When I POST /v1/tasks with {"prompt": "echo hello", "input_mode": "commands"}
    Then the status is 201
    And "id" equals "task_id", both a UUID
    And "status" is "queued" and "created_at", "updated_at" are RFC 3339 times
    And the tasks row has created_by equal to alice's id and project_id equal to alice's default project
    And exactly one job with status "queued" exists for the task

  @REQ-USRGWY-0124 @REQ-STANDS-0130 @phase1
  Scenario Outline: Bad task creation requests are rejected
    When I POST /v1/tasks <request>
    Then I get a problem response with status <status> and detail "<detail>"
    And no tasks row is created

    Examples:
      | request                                          | status | detail                       |
      | without an Authorization header                  | 401    | Missing authorization header |
      | with bearer <node JWT> and a valid body          | 401    | Invalid or expired token     |
      | with a truncated JSON body                       | 400    | Invalid request body         |
      | with {"input_mode": "commands"}                  | 400    | Prompt is required           |
      | with {"prompt": ""}                              | 400    | Prompt is required           |
      | with {"prompt": "x", "project_id": "not-a-uuid"} | 400    | Invalid project_id           |

  @REQ-ORCHES-0125 @phase1
  Scenario: Getting a task returns its state from the documented enum
    Given I created a command task T
    When I GET /v1/tasks/{T}
    Then the status is 200 with "task_id" T
    And "status" is one of "queued", "running", "completed", "failed", "canceled", "superseded"

  @REQ-ORCHES-0124 @REQ-ORCHES-0123 @phase1
  Scenario: The result of a finished task carries the stored job outcome
    Given the stub Worker API answers status "completed", exit_code 0, stdout "hello\n"
    And I created the command task "echo hello" and it reached "completed"
    When I GET /v1/tasks/{T}/result
    Then the status is 200 with "task_id" T, "status" "completed" and one entry in "jobs"
    And jobs[0] has "id", "status" "completed", "started_at" and "ended_at"
    And jobs[0].result parses as a RunJobResponse with "stdout" "hello\n" and "exit_code" 0

  @REQ-ORCHES-0124 @phase1
  Scenario: The result of a task not yet dispatched shows a queued job without a result
    Given no node is dispatchable
    And I created a command task T
    When I GET /v1/tasks/{T}/result
    Then "status" is "queued" and jobs[0] has "status" "queued" and no "result"

  @REQ-USRGWY-0125 @REQ-STANDS-0112 @phase1
  Scenario Outline: Another user's task is not readable, listable or changeable, and its existence is not revealed
    Given no node is dispatchable
    And "bob" created a command task B
    When I, logged in as "alice", call <method> <path>
    Then I get a problem response with status 404 and detail "Task not found"
    And the response is the same, apart from the id, as the same call with a random unknown UUID
    And GET /v1/tasks for "alice" does not list B
    And B's status is unchanged
    And the same call by an administrator succeeds

    Examples:
      | method | path                 |
      | GET    | /v1/tasks/{B}        |
      | GET    | /v1/tasks/{B}/result |
      | GET    | /v1/tasks/{B}/logs   |
      | POST   | /v1/tasks/{B}/cancel |

  @REQ-ORCHES-0125 @phase1
  Scenario: Listing tasks pages through only my tasks
    Given I created 3 command tasks and "bob" created 2
    When I GET /v1/tasks?limit=2
    Then the status is 200 and "tasks" has 2 entries, all created by "alice"
    And "next_offset" is 2
    And GET /v1/tasks?limit=2&offset=2 returns 1 task and no "next_offset"

  @REQ-STANDS-0130 @phase1
  Scenario Outline: Invalid paging parameters are rejected
    When I GET /v1/tasks?<query>
    Then I get a problem response with status 400 and detail "Invalid limit, offset, or cursor"

    Examples:
      | query        |
      | limit=0      |
      | limit=201    |
      | limit=abc    |
      | offset=-1    |
      | offset=--1   |
      | limit=%C2%B2 |

  @REQ-ORCHES-0125 @REQ-CLIENT-0155 @phase1_5
  Scenario: The task list can be filtered by status
    Given I have one "completed" task, one "failed" task and one "canceled" task
    When I GET /v1/tasks?status=completed
    Then every entry in "tasks" has "status" "completed" and exactly one entry is returned
    And GET /v1/tasks?status=canceled returns only the canceled task

  @REQ-ORCHES-0125 @phase1_5
  Scenario: The status filter is applied before pagination
    Given I created 3 tasks that are "completed", then 3 that are "failed"
    When I GET /v1/tasks?status=completed&limit=2
    Then "tasks" has 2 entries, both "completed", and "next_offset" is 2
    And GET /v1/tasks?status=completed&limit=2&offset=2 returns the third completed task and no "next_offset"

  @REQ-ORCHES-0125 @REQ-STANDS-0130 @phase1_5
  Scenario Outline: An unknown status filter value is rejected with the allowed values
    When I GET /v1/tasks?status=<value>
    Then I get a problem response with status 400
    And its "detail" names each allowed value: "queued", "running", "completed", "failed", "canceled", "superseded"

    Examples:
      | value          |
      | no_such_status |
      | COMPLETED      |
      | cancelled      |

  @REQ-ORCHES-0124 @REQ-SANDBX-0105 @phase1_5
  Scenario: Task logs return the captured streams, optionally one of them
    Given the stub Worker API answers stdout "out\n" and stderr "err\n" and my task T completed
    When I GET /v1/tasks/{T}/logs
    Then the status is 200 with "task_id" T, "stdout" "out\n" and "stderr" "err\n"
    And GET /v1/tasks/{T}/logs?stream=stdout has "stdout" "out\n" and "stderr" ""

  @REQ-ORCHES-0121 @REQ-ORCHES-0123 @phase1_5
  Scenario: Cancelling a queued task stops it from ever being dispatched
    Given no node is dispatchable and I created a command task T
    When I POST /v1/tasks/{T}/cancel
    Then the status is 200 with {"task_id": T, "canceled": true}
    And GET /v1/tasks/{T} shows "status" "canceled" and its job has status "canceled"
    And after a node becomes dispatchable the stub Worker API receives no job for T

  @REQ-STANDS-0104 @phase1
  Scenario Outline: Oversize request bodies are refused with 413
    When I POST <path> with a body of 11 MiB
    Then I get a problem response with status 413 and type "urn:cynodeai:error:validation"
    And nothing is stored for the request

    Examples:
      | path             |
      | /v1/tasks        |
      | /v1/auth/login   |
      | /v1/auth/refresh |

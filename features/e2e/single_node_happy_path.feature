Feature: Single-node happy path with real services
  PostgreSQL, the orchestrator (gateway + control plane + dispatcher) and a
  node agent with its Worker API and real Podman run on one host, as
  separate processes talking HTTP on loopback.

  Background:
    Given the orchestrator runs as its own process on a fresh database
    And a recording listener sits on the MCP gateway address

  @REQ-ORCHES-0113 @REQ-ORCHES-0114 @REQ-WORKER-0135 @REQ-ORCHES-0122 @REQ-ORCHES-0123 @REQ-ORCHES-0124 @REQ-IDENTY-0104 @REQ-WORKER-0100 @phase1
  Scenario: A command task runs on the local node from login to result
    Given GET /readyz on the orchestrator is 503 before the node starts
    When the node agent starts, registers with the PSK, fetches its config and acks "applied"
    Then GET /readyz on the gateway and the control plane turns 200 with every check passing
    When I log in as "admin" and create the command task "echo hello"
    Then within 60 seconds the task status is "completed"
    And the task result's job result has "stdout" "hello\n" and "exit_code" 0
    And GET /v1/tasks lists the task and GET /v1/users/me shows handle "admin"
    And the recording listener on the MCP gateway address saw no connection

  @REQ-IDENTY-0105 @REQ-IDENTY-0106 @phase1
  Scenario: A session refreshed mid-flow keeps working and a logged-out one stops
    Given the node agent is ready
    And I logged in as "admin" and created the command task "echo hi"
    When I refresh my tokens and read the task with the new access token
    Then the read succeeds
    When I log out
    Then reading the task with the new access token gets 401 and refreshing gets 401

  @REQ-ORCHES-0123 @REQ-ORCHES-0121 @phase1
  Scenario: The system recovers after the Worker API goes down and comes back
    Given the node agent is ready
    And I log in as "admin" and create the command task "echo first"
    And within 60 seconds the task status is "completed"
    When the node agent is stopped and I create the command task "echo again"
    Then within 60 seconds the task status is "failed" with a dispatch error
    When the node agent starts again and acks "applied"
    And I create the command task "echo back"
    Then within 60 seconds the task status is "completed"
    And the task result's job result has "stdout" "back\n" and "exit_code" 0

  @REQ-ORCHES-0121 @REQ-WORKER-0105 @phase1_5
  Scenario: Cancelling a running task stops its sandbox and keeps the canceled state
    Given the node agent is ready
    And I log in as "admin" and create the command task "sleep 300"
    And within 60 seconds the task status is "running"
    When I cancel the task
    Then the cancel answer is 200 with "canceled" true
    And within 15 seconds no container labelled with the task's job id runs on the node
    And the task and its job stay "canceled" after the node answered the dispatch
    And a second cancel answers 200 and changes nothing

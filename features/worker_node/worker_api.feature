Feature: Worker API surface and authentication
  A real Worker API on 127.0.0.1 running jobs in real Podman containers
  (the podman plugin, on a Podman service of this feature's own so that a
  scenario can stop it). Podman's own record of every container the runtime
  creates is kept, so "no container is created" is checked, not assumed.
  Job workspaces are kept after each job so the scenarios can read them.

  Background:
    Given the Worker API is running with bearer token <worker_token>, a working container runtime and a workspace root on the host

  @REQ-WORKER-0140 @REQ-WORKER-0141 @REQ-WORKER-0142 @REQ-WORKER-0252 @phase1
  Scenario: Health and readiness answer without a token and reflect the runtime
    When I GET /healthz and /readyz without credentials
    Then /healthz answers 200 "ok" and /readyz answers 200 "ready"
    When the container runtime is made unavailable (its Podman service stops)
    Then /readyz answers 503 with a plain-text reason and /healthz still answers 200 "ok"

  @REQ-WORKER-0109 @REQ-WORKER-0143 @REQ-WORKER-0103 @REQ-SANDBX-0105 @REQ-WORKER-0110 @REQ-SANDBX-0102 @REQ-SANDBX-0103 @REQ-SANDBX-0104 @phase1
  Scenario: A job runs in a container and returns the documented result
    When I POST /v1/worker/jobs:run with bearer <worker_token> and {"version": 1, "task_id": <T1>, "job_id": <J1>, "sandbox": {"image": "alpine:latest", "command": ["sh", "-c", "echo out; echo err >&2"]}}
    Then the status is 200 with "version" 1, "task_id" <T1>, "job_id" <J1> and "status" "completed"
    And "exit_code" is 0, "stdout" is "out\n", "stderr" is "err\n"
    And "started_at" and "ended_at" are RFC 3339 times and "truncated" is {"stdout": false, "stderr": false}
    And the runtime ran the command in a container, with no published ports and no sshd
    And a call with a fresh job_id and command ["sh", "-c", "exit 3"] answers 200 with "status" "failed" and "exit_code" 3

  @REQ-WORKER-0101 @REQ-WORKER-0001 @REQ-WORKER-0102 @REQ-WORKER-0108 @REQ-STANDS-0111 @phase1
  Scenario Outline: Job calls without the right bearer token are refused before anything runs
    When I POST /v1/worker/jobs:run with a valid body and Authorization "<header>"
    Then I get a problem response with status 401 and detail "Invalid or missing bearer token"
    And no container is created
    And no log line of the Worker API or node manager contains <worker_token>
    Examples:
      | header                     |
      | (absent)                   |
      | Bearer                     |
      | Bearer wrong-token         |
      | Bearer <worker_token>x     |
      | bearer-less <worker_token> |
      | Bearer <node JWT>          |
      | Bearer <user access token> |

  @REQ-WORKER-0143 @REQ-WORKER-0138 @REQ-STANDS-0130 @phase1
  Scenario Outline: Invalid job requests are rejected with 400
    When I POST /v1/worker/jobs:run with bearer <worker_token> and <body>
    Then I get a problem response with status 400
    And no container is created and nothing is created under the workspace root
    Examples:
      | body                                                           |
      | a truncated JSON document                                      |
      | a valid request with "version" 2                               |
      | a valid request without "task_id"                              |
      | a valid request with "job_id" ""                               |
      | a valid request with "sandbox.command" [] and no job_spec_json |
      | a valid request with "job_id" "../../etc"                      |
      | a valid request with "job_id" "j-1"                            |
      | a valid request with "task_id" "t-1"                           |
      | a valid request with "job_id" "/tmp/x"                         |
      | a valid request with "task_id" "..%2F..%2Fetc"                 |
      | a valid request with a UUID job_id followed by "/.."           |

  @REQ-WORKER-0145 @REQ-STANDS-0104 @phase1
  Scenario: An oversize job request is refused with 413, and only after authentication
    When I POST /v1/worker/jobs:run with bearer <worker_token> and a body of 11 MiB
    Then I get a problem response with status 413 and type "urn:cynodeai:error:validation"
    And the same body without a token gets 401

  @REQ-STANDS-0129 @phase1
  Scenario: A repeated jobs:run for a finished job returns the stored result without running again
    Given I ran job <J1> of task <T1> with command ["sh", "-c", "date +%s%N; echo ran >> /workspace/count"] and got result X
    When I POST the same jobs:run request for <J1> again
    Then the status is 200 and the body equals X, including "stdout", "started_at" and "ended_at"
    And no new container was created for <J1> and /workspace/count of <J1> holds one line

  @REQ-STANDS-0129 @phase1
  Scenario: A repeated jobs:run while the job is still running does not start it twice
    Given jobs:run for job <J1> with command ["sh", "-c", "sleep 2; echo ran >> /workspace/count; echo done"] is in progress
    When a second jobs:run for <J1> arrives on another connection
    Then no second container is created for <J1>
    And both calls answer 200 with the same result, "stdout" "done\n"
    And /workspace/count of <J1> holds one line

  @REQ-ORCHES-0121 @REQ-WORKER-0105 @phase1_5
  Scenario: The Worker API cancel call stops a running job's container
    Given jobs:run for job <J1> with command ["sleep", "300"] is in progress
    When I POST /v1/worker/jobs/<J1>:cancel with bearer <worker_token>
    Then the answer is a 2xx status
    And within 15 seconds no container labelled with job_id <J1> is running or left stopped on the node
    And the pending jobs:run call for <J1> returns without a "completed" status
    And a second cancel for <J1> answers the same 2xx status
    And a later jobs:run for <J1> starts no container

  @REQ-WORKER-0101 @REQ-STANDS-0111 @REQ-STANDS-0130 @phase1_5
  Scenario Outline: Cancel calls that are unauthenticated, malformed or for an unknown job
    Given jobs:run for job <J1> with command ["sleep", "300"] is in progress
    When I POST /v1/worker/jobs/<job>:cancel with Authorization "<header>"
    Then I get a problem response with status <status>
    And no container is stopped
    Examples:
      | job                    | header                | status |
      | <a running job's id>   | (absent)              | 401    |
      | <a running job's id>   | Bearer wrong-token    | 401    |
      | <a fresh unknown UUID> | Bearer <worker_token> | 404    |
      | not-a-uuid             | Bearer <worker_token> | 400    |
      | ..                     | Bearer <worker_token> | 400    |

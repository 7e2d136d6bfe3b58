Feature: Per-node dispatch to the Worker API and result collection
  The real dispatcher claims queued jobs from PostgreSQL and calls each
  node's own Worker API with that node's bearer token. Each "stub Worker
  API" is the node agent's real Worker API on loopback over a scripted
  sandbox runtime: every call is recorded and what a job prints is scripted.
  Scenarios tagged @orchestrator_process run the orchestrator as a real
  `cynode orchestrator serve` child process (lease 3 s, dispatcher poll
  0.2 s), because they stop, restart or SIGKILL it; the others run the same
  app and dispatcher threads inside the test process.

  Background:
    Given the control plane and gateway are running and I am logged in as "alice"
    And node "node-01" registered with worker_api.base_url of stub Worker API W1, fetched config and acked "applied"

  @REQ-ORCHES-0123 @REQ-WORKER-0100 @REQ-ORCHES-0148 @REQ-WORKER-0143 @phase1
  Scenario: The dispatcher calls the node's own Worker API URL with the node's bearer token
    When I create the command task "echo hello"
    Then W1 receives exactly one POST /v1/worker/jobs:run with header "Authorization: Bearer <worker_token>"
    And the body has "version" 1, the task's "task_id", a "job_id" equal to the stored job id
    And "sandbox.command" is ["sh", "-c", "echo hello"] and "sandbox.image" is "alpine:latest"
    And the job is assigned to "node-01" and the task passes through "running" to "completed"
    And the job result stores W1's response verbatim

  @REQ-ORCHES-0123 @REQ-WORKER-0135 @phase1
  Scenario: Only an active node with an "applied" ack and stored URL and token receives work
    Given node "node-02" behind stub W2 registered and fetched config but acked "failed"
    And node "node-03" behind stub W3 registered but never fetched config
    When I create 3 command tasks
    Then W1 receives all 3 jobs and W2 and W3 receive none

  @REQ-ORCHES-0121 @REQ-ORCHES-0116 @phase1
  Scenario: With no dispatchable node a task waits in the queue instead of failing
    Given node "node-01" has acked "failed" for its current config
    When I create a command task T and wait 2 seconds
    Then T is still "queued"
    And once "node-01" acks "applied" T is dispatched and reaches "completed"

  @REQ-ORCHES-0123 @REQ-ORCHES-0124 @phase1
  Scenario Outline: A worker-side failure marks the job and the task failed and keeps the evidence
    Given W1 answers status "<worker_status>" with exit_code <code> and stderr "<stderr>"
    When I create a command task T
    Then T reaches "failed" and its job has status "failed"
    And GET /v1/tasks/{T}/result shows the stored worker response with "exit_code" <code>

    Examples:
      | worker_status | code | stderr       |
      | failed        | 2    | no such file |
      | timeout       | -1   |              |

  @REQ-ORCHES-0123 @REQ-STANDS-0112 @phase1
  Scenario: A node that is down during dispatch leads to a bounded retry and a failed task, never a stuck one
    Given W1 has been stopped so its port refuses connections
    When I create a command task T
    Then within 30 seconds T is "failed" and its job result holds a dispatch error naming the worker call
    And the dispatcher tried W1 at most 3 times
    And no job stays "running" and the dispatcher keeps serving later tasks once W1 is back

  @REQ-WORKER-0101 @REQ-WORKER-0102 @phase1
  Scenario Outline: A Worker API answer that is not a 200 JSON result fails the job without leaking the token
    Given the dispatch HTTP timeout is 2 seconds
    And W1 answers every jobs:run call with <answer>
    When I create a command task T
    Then T reaches "failed" within 30 seconds
    And no log line of the control plane contains <worker_token>

    Examples:
      | answer                               |
      | 401 with a problem body              |
      | 200 with a body that is not JSON     |
      | 500 with a problem body              |
      | no answer until the dispatch timeout |

  @REQ-WORKER-0104 @REQ-SANDBX-0100 @phase1
  Scenario: The dispatched job carries no orchestrator secret
    When I create the command task "env"
    Then the body W1 receives contains none of the secret values
    And "sandbox.env", if present, has no key whose value is a secret value

  @REQ-ORCHES-0121 @phase1 @orchestrator_process
  Scenario: Queued tasks survive an orchestrator restart and run exactly once
    Given no node is dispatchable and I created 3 command tasks
    When the control plane and gateway are stopped and started again
    And "node-01" acks "applied" again
    Then each of the 3 tasks keeps its id, created_by and prompt
    And W1 receives exactly one jobs:run per task and all 3 reach "completed"

  @REQ-ORCHES-0121 @REQ-ORCHES-0123 @phase1 @orchestrator_process
  Scenario: A task in flight when the orchestrator dies is re-sent under the same job_id and runs exactly once
    Given W1 is idempotent by job_id, like the real Worker API, and a run of "sleep 10; echo once" takes 10 seconds and prints "once\n"
    And my command task T "sleep 10; echo once" is "running" as job J
    When the control plane is killed with SIGKILL and started again
    Then after J's lease expires the Worker API receives jobs:run for T again, with job_id J
    And the node ran job J exactly once
    And within 60 seconds of the restart T is "completed" with stdout "once\n" and a single job J
    And GET /v1/tasks/{T} and /v1/tasks/{T}/result still answer 200 with the same task_id
    And at no time after the lease expiry is T left "running" without a live lease

  @REQ-ORCHES-0121 @REQ-ORCHES-0123 @phase1 @orchestrator_process
  Scenario: A job whose lease keeps expiring fails with a reason after the configured attempts
    Given the job attempt limit is configured to 2
    And W1 holds every jobs:run call open without answering
    And my command task T is "running" as job J
    When the control plane is killed with SIGKILL and started again, each time after W1 has received jobs:run for J, until W1 has received 2 calls
    Then W1 received jobs:run for T exactly 2 times, each with job_id J
    And within 60 seconds of the last restart T and J are "failed" with a reason naming the exhausted attempts
    And no job stays "running"

  @REQ-ORCHES-0121 @REQ-WORKER-0105 @phase1_5
  Scenario: Cancel reaches the worker and a late result never overwrites it
    Given W1 answers jobs:run late, only after the job's cancel has reached it, with status "completed", exit_code 0 and stdout "late\n"
    And my command task T is "running" as job J
    When I POST /v1/tasks/{T}/cancel
    Then W1 receives POST /v1/worker/jobs/{J}:cancel with header "Authorization: Bearer <worker_token>"
    And after W1's late jobs:run answer has arrived, T and J are still "canceled"

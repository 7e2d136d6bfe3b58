Feature: Sandbox constraints (Phase 1 and our hardening)
  Jobs go through a real Worker API on 127.0.0.1 into real Podman
  containers. "The runtime's record of the container" is Podman's own
  inspect data of the job's container, taken when the runtime created it.
  Only loopback addresses are ever contacted: that no outside address can
  be reached is proved from inside the sandbox (no interface but lo, no
  route), never by trying one. These machines run cgroup v1 or v2; the
  limits scenario reads whichever files the host has, and on cgroup v1 an
  unlimited memory cgroup shows its page-rounded maximum, read as "max".

  Background:
    Given the Worker API is running with a real container runtime, a 256 KiB output cap and a host-side TCP listener L on the host
    And every job below is sent with bearer <worker_token>, "version" 1 and a fresh task_id and job_id

  @REQ-SANDBX-0108 @REQ-SANDBX-0109 @REQ-WORKER-0250 @phase1
  Scenario: Each job gets a writable /workspace and its task context in the environment
    When I run ["sh", "-c", "pwd; touch /workspace/f && echo ok; env"] as task <T9> job <J9>
    Then stdout starts with "/workspace\nok\n"
    And stdout contains "CYNODE_TASK_ID=<T9>", "CYNODE_JOB_ID=<J9>" and "CYNODE_WORKSPACE_DIR=/workspace"

  @REQ-WORKER-0104 @phase1
  Scenario: Request env can add variables but cannot override the reserved CYNODE_ ones
    When I run ["env"] as task <T9> job <J9> with sandbox.env {"CYNODE_TASK_ID": "forged", "CYNODE_WORKSPACE_DIR": "/", "FOO": "bar"}
    Then stdout contains "CYNODE_TASK_ID=<T9>", "CYNODE_WORKSPACE_DIR=/workspace" and "FOO=bar"
    And stdout does not contain "forged"

  @REQ-SANDBX-0100 @REQ-WORKER-0104 @REQ-WORKER-0127 @REQ-WORKER-0131 @REQ-SANDBX-0113 @phase1
  Scenario: No secret of the node or orchestrator is visible inside the sandbox
    Given the node's process environment holds every secret value
    When I run ["sh", "-c", "env; cat /proc/1/environ; ls -a /run /var/run / 2>&1"]
    Then stdout contains none of the secret values
    And stdout has no variable naming a database URL, a JWT, a PSK or an API key

  @REQ-SANDBX-0101 @REQ-WORKER-0105 @REQ-SANDBX-0111 @phase1
  Scenario Outline: Sandbox network access is denied for every Phase 1 policy
    When I run a job with "sandbox.network_policy" <policy> that tries to connect to L, to the node's Worker API port and to the inference port, and lists its interfaces and routes
    Then every attempt fails and L records no connection
    And the only network interface inside the sandbox is loopback and it has no route to any other address
    Examples:
      | policy         |
      | "none"         |
      | "restricted"   |
      | (field absent) |
      | "open"         |

  @REQ-WORKER-0144 @REQ-WORKER-0105 @phase1
  Scenario: A job that exceeds its timeout is stopped and reported as timed out
    When I run ["sh", "-c", "echo start; sleep 60"] with "timeout_seconds" 2
    Then the response arrives within 10 seconds with "status" "timeout" and "exit_code" -1
    And "stdout" holds whatever was captured ("start\n" or "")
    And no container for that job_id is left running or stopped on the node

  @REQ-WORKER-0106 @REQ-WORKER-0107 @REQ-WORKER-0146 @REQ-WORKER-0148 @phase1
  Scenario: Huge output is cut at the cap and flagged, the rest is untouched
    Given the Worker API runs in a node agent process of its own, so its resident memory can be measured
    When I run ["sh", "-c", "head -c 20000000 /dev/zero | tr '\\0' a; echo small >&2"]
    Then the response arrives with "status" "completed"
    And "stdout" is exactly 262144 bytes of "a" and "truncated.stdout" is true
    And "stderr" is "small\n" and "truncated.stderr" is false
    And the Worker API's resident memory stayed below 200 MiB during the job

  @REQ-WORKER-0147 @phase1
  Scenario: Truncation never splits a UTF-8 character
    When I run a job that prints 300000 bytes of the three-byte character "€"
    Then "stdout" is valid UTF-8, at most 262144 bytes long, and "truncated.stdout" is true

  @REQ-SANDBX-0109 @REQ-SANDBX-0100 @REQ-SANDBX-0110 @phase1
  Scenario: A job cannot see another job's workspace
    Given job <Ja> wrote "secret-a" to /workspace/a.txt and finished, its workspace kept on the host
    When job <Jb> runs ["sh", "-c", "ls -la /workspace; cat /workspace/a.txt; find / -name a.txt 2>/dev/null"]
    Then stdout does not contain "secret-a" and lists no "a.txt"

  @REQ-SANDBX-0100 @REQ-WORKER-0251 @phase1
  Scenario: Host files and the node's state stay out of reach
    Given the host has a file "/etc/cynode-host-marker-<random>" containing "host-only" and the node's state dir holds its config
    When I run ["sh", "-c", "id -u; cat <host marker>; ls /var/lib/cynode <state dir>; cat <state dir>/config.yaml; mount"]
    Then stdout's first line is not "0"
    And stdout does not contain "host-only" or any secret value
    And the only host bind mount listed is the job's own workspace at /workspace

  @REQ-WORKER-0113 @REQ-WORKER-0111 @phase1
  Scenario: Sandbox containers are labelled for audit and removed after the run
    When I run a job "sleep 3" as task <Tl> job <Jl>
    Then while it runs the runtime lists a container with labels carrying task_id <Tl> and job_id <Jl>
    And after the response no container with that job_id remains

  @beyond_upstream @phase1
  Scenario: The sandbox runs as a non-root user with a read-only root and a writable /workspace
    When I run ["sh", "-c", "id -u; touch /workspace/w && echo ws-ok; touch /etc/x || echo root-ro; touch /x || echo top-ro"]
    Then the status is "completed"
    And stdout's first line is a number other than "0"
    And stdout contains "ws-ok", "root-ro" and "top-ro"
    And the runtime's record of the container shows a read-only root filesystem and a non-root user

  @beyond_upstream @phase1
  Scenario: The sandbox holds no capabilities and cannot gain privileges
    When I run ["sh", "-c", "grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs)' /proc/self/status; chown 0 /workspace || echo chown-denied"]
    Then "CapPrm", "CapEff" and "CapBnd" are all 0000000000000000
    And "NoNewPrivs" is 1
    And stdout contains "chown-denied"
    And the runtime's record of the container shows no added capability, no privileged mode and the no-new-privileges option

  # The spec's bomb alone ends at once: its shell returns, and the container
  # ends with its first process. The trailing sleep keeps it running, so the
  # bomb keeps forking against the limit until the timeout.
  @beyond_upstream @phase1
  Scenario: The default pids limit contains a fork bomb
    Given the node runs with its default sandbox limits
    When I run a fork bomb ["sh", "-c", "f(){ f | f & }; f; sleep 60"] with "timeout_seconds" 10
    Then the response arrives within 30 seconds with "status" "failed" or "timeout"
    And the container's process count never exceeded the configured pids limit
    And during the job the Worker API /healthz kept answering 200 and the host could still start processes
    And afterwards no process or container of that job remains on the node
    And a following "echo ok" job completes normally

  @beyond_upstream @phase1
  Scenario Outline: Default memory and pids limits apply unless configuration lifts them
    Given the node's sandbox limits are configured as <limits>
    When I run ["sh", "-c", "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes"]
    Then stdout shows <shown>
    Examples:
      | limits                     | shown                                         |
      | (not set, defaults)        | a finite pids limit and a finite memory limit |
      | pids 64 and memory 256 MiB | "64" and "268435456"                          |
      | "no limits"                | "max" for both                                |

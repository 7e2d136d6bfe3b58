Feature: Start-up secrets, health and readiness of the orchestrator services
  The gateway and the control plane answer /healthz as soon as the process
  serves, and /readyz only while the database answers, its schema is at the
  newest migration and at least one node is dispatchable (decisions.md,
  Acceptance 8). Secrets nobody set are generated at first start and never
  taken from upstream's defaults.

  @REQ-STANDS-0115 @REQ-ORCHES-0120 @REQ-BOOTST-0105 @phase1
  Scenario: Health probes answer without authentication while nothing else is up
    Given the control plane and gateway are running with no node registered and no inference container of their own
    When I GET /healthz on the control plane and on the gateway without credentials
    Then both answer 200 with the plain-text body "ok"

  @REQ-ORCHES-0120 @REQ-BOOTST-0002 @REQ-ORCHES-0116 @phase1
  Scenario: The orchestrator is not ready while no node is dispatchable
    Given the control plane and gateway are running against a migrated database with no node registered
    When I GET /readyz on the control plane and on the gateway
    Then both answer 503
    And each body lists the checks "database", "migrations" and "dispatchable node" with their states, only "dispatchable node" failing
    And GET /healthz on both still answers 200 "ok"
    And the Project Manager agent plays no part in the answer

  @REQ-ORCHES-0120 @REQ-BOOTST-0002 @REQ-WORKER-0135 @phase1
  Scenario: Readiness follows the node's config ack and the node's own readiness
    Given the control plane and gateway are running against a migrated database with no node registered
    And node "node-01" registered and fetched config, its Worker API /readyz answering 200
    Then GET /readyz on both is 503
    When "node-01" acks "applied"
    Then GET /readyz on both is 200 and the body lists every check as passing
    When node-01's Worker API /readyz starts answering 503
    Then GET /readyz on both is 503 with the "dispatchable node" check failing
    When node-01's Worker API /readyz answers 200 again
    Then GET /readyz on both is 200
    When the orchestrator issues node-01 a new config_version that it has not acked yet
    Then GET /readyz on both is 503
    When "node-01" acks that config_version with "failed"
    Then GET /readyz on both is still 503

  @REQ-ORCHES-0120 @REQ-STANDS-0110 @phase1
  Scenario: A lost database makes the services unready but not dead
    Given the orchestrator is ready
    When PostgreSQL becomes unreachable
    Then GET /readyz on both is 503 with the "database" check failing
    And GET /healthz on both still answers 200 "ok"
    And no response body contains the database password

  @REQ-ORCHES-0120 @phase1
  Scenario: A database behind the newest migration keeps the services unready
    Given the orchestrator is ready
    And the database schema is one migration behind head
    When I GET /readyz on the control plane and on the gateway
    Then both answer 503
    And each body shows the "migrations" check failing and the "database" check passing
    When the missing migration is applied
    Then GET /readyz on both is 200

  # The Worker API rows of this outline (404 and 405 with a valid token)
  # are proved in tests/node_agent/test_worker_api.py against a real Worker API.
  @REQ-STANDS-0108 @REQ-STANDS-0109 @phase1
  Scenario Outline: The web framework's own errors are problem details on every service
    Given the control plane and gateway are running against a migrated database with no node registered
    When I send <request> to the <service>
    Then I get a problem response with status <status>, "Content-Type" "application/problem+json" and a "type" URN from the contracts
    And the body holds no stack trace and no secret value
    Examples:
      | service       | request                 | status |
      | gateway       | GET /v1/no-such-route   | 404    |
      | gateway       | DELETE /v1/tasks        | 405    |
      | gateway       | a login body of 11 MiB  | 413    |
      | control plane | GET /v1/no-such-route   | 404    |
      | control plane | PUT /v1/nodes/register  | 405    |

  @beyond_upstream @phase1
  Scenario: Unset secrets are generated at first start and stored readable only by the owner
    Given an empty CYNODE_HOME and no JWT secret, node registration PSK or bootstrap admin password in the environment or the bootstrap file
    When the control plane and gateway start for the first time
    Then a JWT secret of at least 32 bytes, a node PSK and an admin password are generated and each stored in a file under CYNODE_HOME with mode 0600
    And the start-up output prints the path of the admin password file but not the password itself
    And logging in as "admin" with the stored admin password succeeds, and with "admin123" gets 401
    And registering a node with psk "default-psk-change-me" gets 401, while the stored PSK is accepted
    And a user access token signed with "change-me-in-production" gets 401
    When the services are restarted with the same CYNODE_HOME
    Then the stored values are reused unchanged and a token issued before the restart still works

  @beyond_upstream @phase1
  Scenario Outline: A JWT signing secret shorter than 32 bytes is refused at start
    Given <variable> is set to a secret of <length> bytes and CYNODE_HOME holds no generated secret
    When the control plane and gateway start
    Then <outcome>
    And no output of the services contains the secret value
    Examples:
      | variable          | length | outcome                                                                         |
      | CYNODE_JWT_SECRET | 31     | both exit non-zero with an error naming the JWT secret length, serving nothing |
      | JWT_SECRET        | 16     | both exit non-zero with an error naming the JWT secret length, serving nothing |
      | CYNODE_JWT_SECRET | 32     | both start and GET /healthz answers 200                                         |

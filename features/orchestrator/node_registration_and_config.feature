Feature: Node registration, capability reports, config delivery and config ack
  The control plane (/v1/nodes/*) of the real orchestrator app on a real
  PostgreSQL database. The control plane generates each node's Worker API
  bearer token and rotates it on every registration (docs/decisions.md,
  Orchestrator 9), so the spec's <worker_token> is the token the control
  plane holds for the node; it is stored encrypted.

  Background:
    Given the control plane is running with registration PSK <psk> and public URL "http://cp.test:12082"
    And a capability report "cap" with version 1, node.node_slug "node-01", platform, compute and worker_api.base_url "http://127.0.0.1:12090"

  @REQ-ORCHES-0113 @REQ-WORKER-0139 @REQ-ORCHES-0148 @REQ-WORKER-0136 @phase1
  Scenario: A new node registers with the PSK and gets a bootstrap payload
    When the node POSTs /v1/nodes/register with {"psk": <psk>, "capability": cap}
    Then the status is 201
    And "version" is 1 and "issued_at" is an RFC 3339 UTC time
    And "orchestrator.base_url" is "http://cp.test:12082"
    And "orchestrator.endpoints.worker_registration_url" ends with "/v1/nodes/register"
    And "orchestrator.endpoints.node_report_url" ends with "/v1/nodes/capability"
    And "orchestrator.endpoints.node_config_url" ends with "/v1/nodes/config"
    And "auth.node_jwt" is a JWT and "auth.expires_at" is an RFC 3339 time in the future
    And the nodes row "node-01" exists with worker_api_target_url "http://127.0.0.1:12090"
    And the capability snapshot is stored and capability_hash is set
    And the same request with an extra unknown field "future_field" in cap is also accepted and stored as sent

  @REQ-ORCHES-0113 @REQ-STANDS-0107 @phase1
  Scenario: Registering an existing slug again re-issues a JWT without a duplicate node
    Given node "node-01" is registered
    When the node registers again with the same PSK and slug
    Then the status is 200 with a fresh "auth.node_jwt"
    And exactly one nodes row has node_slug "node-01"

  @REQ-WORKER-0108 @REQ-STANDS-0110 @REQ-STANDS-0130 @phase1
  Scenario Outline: Registration with a wrong or missing PSK is refused
    When a client POSTs /v1/nodes/register with psk <psk_value> and capability cap
    Then I get a problem response with status 401 and detail "Invalid registration PSK"
    And no nodes row "node-01" exists
    And no log line of the control plane contains the submitted PSK value
    Examples:
      | psk_value                   |
      | "wrong-psk"                 |
      | ""                          |
      | (field absent)              |
      | <psk> with a trailing space |

  @REQ-WORKER-0137 @REQ-WORKER-0138 @REQ-STANDS-0130 @phase1
  Scenario Outline: Malformed registration bodies are rejected with 400
    When a client POSTs /v1/nodes/register with <body>
    Then I get a problem response with status 400 and detail "<detail>"
    And no nodes row is created
    Examples:
      | body                                                | detail                         |
      | a truncated JSON document                           | Invalid request body           |
      | the right PSK and cap with "version" 2              | Unsupported capability version |
      | the right PSK and cap without node.node_slug        | Node slug is required          |
      | the right PSK and a JSON array instead of an object | Invalid request body           |

  @REQ-ORCHES-0114 @REQ-WORKER-0139 @REQ-ORCHES-0148 @phase1
  Scenario: A capability report is stored and moves the dispatch URL when base_url changes
    Given node "node-01" is registered and holds node JWT J
    When the node POSTs /v1/nodes/capability with bearer J and cap changed to worker_api.base_url "http://127.0.0.1:12091"
    Then the status is 204
    And last_capability_at is updated and capability_hash differs from the previous value
    And worker_api_target_url for "node-01" is "http://127.0.0.1:12091"
    And posting the identical report again leaves capability_hash unchanged

  @REQ-STANDS-0111 @REQ-USRGWY-0133 @phase1
  Scenario Outline: Node endpoints refuse anything but a valid node JWT
    When a client calls <method> <path> with Authorization "<header>"
    Then I get a problem response with status 401
    Examples:
      | method | path                 | header                              |
      | GET    | /v1/nodes/config     | (absent)                            |
      | GET    | /v1/nodes/config     | Bearer <user access token>          |
      | GET    | /v1/nodes/config     | Bearer <node JWT, expired>          |
      | GET    | /v1/nodes/config     | Bearer <node JWT, signature broken> |
      | POST   | /v1/nodes/config     | Bearer <user refresh token>         |
      | POST   | /v1/nodes/capability | (absent)                            |
      | POST   | /v1/nodes/capability | Bearer <user access token>          |

  @REQ-ORCHES-0113 @REQ-WORKER-0135 @REQ-ORCHES-0148 @phase1
  Scenario: A registered node fetches its configuration with its JWT
    Given node "node-01" is registered and holds node JWT J
    When the node GETs /v1/nodes/config with bearer J
    Then the status is 200 with a node_configuration_payload_v1
    And "version" is 1, "node_slug" is "node-01" and "config_version" is a non-empty ULID
    And "orchestrator.base_url" is "http://cp.test:12082"
    And "orchestrator.endpoints.worker_api_target_url" is "http://127.0.0.1:12090"
    And "orchestrator.endpoints.node_report_url" ends with "/v1/nodes/capability"
    And "worker_api.orchestrator_bearer_token" equals the Worker API bearer token the control plane holds for "node-01"
    And a second GET returns the same "config_version"
    And the nodes row stores worker_api_target_url and worker_api_bearer_token for "node-01"

  @REQ-ORCHES-0149 @REQ-WORKER-0256 @phase1
  Scenario Outline: The config says whether the node must start its own inference backend
    Given node "node-01" registered with capability inference.supported <supported> and inference.existing_service <existing>
    When the node fetches its configuration
    Then "inference_backend" is <expectation>
    Examples:
      | supported | existing | expectation                   |
      | true      | false    | present with "enabled" true   |
      | true      | true     | absent or has "enabled" false |
      | false     | false    | absent                        |

  @REQ-WORKER-0135 @phase1
  Scenario: A config ack "applied" is recorded and makes the node dispatchable
    Given node "node-01" has fetched config with config_version V
    When it POSTs /v1/nodes/config with {"version": 1, "node_slug": "node-01", "config_version": V, "ack_at": now, "status": "applied"}
    Then the status is 204
    And the nodes row has config_ack_status "applied", config_version V and config_ack_at equal to ack_at
    And node "node-01" is in the dispatchable set

  @REQ-WORKER-0135 @REQ-ORCHES-0120 @phase1
  Scenario: A config ack "failed" is recorded with its error and keeps the node out of dispatch
    Given node "node-01" has fetched config with config_version V
    When it acks with status "failed" and error {"type": "inference_start", "message": "ollama did not start"}
    Then the status is 204
    And the nodes row has config_ack_status "failed" and config_ack_error "ollama did not start"
    And node "node-01" is not in the dispatchable set and GET /readyz on the control plane is 503

  @REQ-WORKER-0135 @REQ-STANDS-0130 @phase1
  Scenario Outline: Invalid config acks are rejected and leave the stored ack unchanged
    Given node "node-01" has acked config_version V with status "applied"
    When it POSTs /v1/nodes/config with bearer of "node-01" and <ack>
    Then I get a problem response with status 400 and detail "<detail>"
    And the nodes row still has config_ack_status "applied" for config_version V
    Examples:
      | ack                                  | detail                                      |
      | a valid ack with node_slug "node-02" | node_slug does not match authenticated node |
      | a valid ack with status "ok"         | status must be applied or failed            |
      | a valid ack with status "APPLIED"    | status must be applied or failed            |
      | a valid ack with status ""           | status must be applied or failed            |
      | a valid ack with "version" 2         | Unsupported config ack version              |
      | a body that is not JSON              | Invalid request body                        |

Feature: Node manager start-up sequence and the inference precondition
  The real Node Manager (in this process) with real Podman against a STUB
  orchestrator on 127.0.0.1 (tests/node_agent/stub_orchestrator.py), whose
  bootstrap advertises non-default paths so a node that ignores the
  bootstrap URLs fails. A healthy inference service is the real embedded
  llama.cpp backend plugin ("llamacpp", found through the "cynode" entry
  points) on its real GGUF model; a failing one is a test plugin whose
  start() raises. The orchestrator's "enabled" instruction follows the
  node's capability report (inference.supported, existing_service).

  Background:
    Given a stub orchestrator whose bootstrap advertises the node_config_url path "/custom/config"
    And the stub config has "worker_api.orchestrator_bearer_token" <worker_token> and "inference_backend" {"enabled": true}

  @REQ-WORKER-0253 @REQ-WORKER-0254 @REQ-WORKER-0135 @REQ-WORKER-0139 @phase1
  Scenario: The node registers, fetches config, starts services, and only then acks "applied"
    Given the node's inference backend is the embedded llama.cpp plugin, which answers only once its model has loaded
    When the node manager starts with slug "node-01" and the right PSK
    Then the stub orchestrator sees, in order: register with "psk" and capability worker_api.base_url, GET "/custom/config" with the bootstrap node JWT, then the config ack
    And the Worker API is started with <worker_token> before the inference backend is started
    And the ack has "version" 1, "node_slug" "node-01", the fetched "config_version" and "status" "applied"
    And the ack arrives only after the inference endpoint answered healthy
    And capability reports are then POSTed to the bootstrap node_report_url with the node JWT

  @REQ-WORKER-0002 @REQ-BOOTST-0002 @REQ-WORKER-0252 @REQ-WORKER-0135 @phase1
  Scenario: A node whose inference backend cannot start sends a failed ack, then exits non-zero
    Given the configured inference backend plugin cannot start (a test plugin whose start() raises)
    When the node manager runs its start-up sequence
    Then the stub orchestrator receives a config ack with the fetched "config_version", "status" "failed" and an "error" giving the inference start-up failure as its reason
    And only after that ack the node manager exits with a non-zero code and an error saying inference start-up failed
    And the stub orchestrator receives no config ack with status "applied"
    And the node's Worker API /readyz does not answer 200 "ready"
    And against a real control plane, GET /readyz stays 503 and no task is dispatched to the node

  @REQ-WORKER-0255 @REQ-WORKER-0256 @REQ-WORKER-0115 @REQ-SANDBX-0107 @phase1
  Scenario: An inference service already running on the host is used, not duplicated
    Given an Ollama-compatible service already answers on 127.0.0.1 on the host
    When the node manager starts
    Then the capability report has "inference.supported" true, "inference.existing_service" true and "inference.running" true
    And no inference container is started and the ack is "applied"
    And the inference port is not bound on any non-loopback interface

  @REQ-WORKER-0108 @REQ-WORKER-0102 @phase1
  Scenario: A rejected PSK stops start-up cleanly without leaking it
    Given the stub orchestrator answers registration with 401 "Invalid registration PSK"
    When the node manager starts
    Then it exits non-zero with an error naming the registration failure
    And it made no config fetch and started no Worker API
    And no log line contains the PSK

  @REQ-WORKER-0138 @REQ-WORKER-0137 @phase1
  Scenario: A config of an unsupported version is acknowledged as failed
    Given the stub config has "version" 2
    When the node manager starts
    Then it sends a config ack with "status" "failed" and an "error" whose "type" names the unsupported version
    And it does not start sandbox work or report ready
    And after sending that ack it exits with a non-zero code

Feature: Model-answered tasks and inference from inside the sandbox
  The node serves a real local model (the embedded llama.cpp backend with
  the gemma-3-270m GGUF); prompt tasks and inference jobs reach it only
  through the node's per-job Unix-socket proxy, with no network.

  Background:
    Given the single-node stack is ready with a node serving the embedded model and I am logged in as "admin"
    And the node reported the served model in "inference.available_models"

  @REQ-ORCHES-0126 @REQ-SANDBX-0106 @phase1_5
  Scenario: A plain prompt is answered by the model, not run as a shell command
    When I create a task with the prompt "What is 2+2? Answer with one number." and no input_mode
    Then within 120 seconds the task is "completed" and its result has a non-empty model answer
    And the job payload sent to the node is not the shell command ["sh", "-c", "What is 2+2? Answer with one number."]
    And the task logs return the same answer in "stdout"

  @REQ-ORCHES-0126 @REQ-ORCHES-0128 @phase1_5
  Scenario: Shell text sent as a prompt is never executed
    When I create a task with the prompt "touch /workspace/pwned && echo PWNED-$((6*7))" and no input_mode
    Then the task reaches a terminal status and no file "pwned" exists in its job workspace
    And the result does not contain "PWNED-42"

  @REQ-WORKER-0114 @REQ-SANDBX-0131 @REQ-WORKER-0260 @phase1_5
  Scenario: An inference job sees only a Unix-socket proxy URL
    When I create the inference command task "echo $INFERENCE_PROXY_URL; env"
    Then the task is "completed" and stdout starts with "http+unix://"
    And stdout has no "OLLAMA_BASE_URL" and not the backend's http:// address

  @REQ-WORKER-0114 @REQ-SANDBX-0106 @REQ-SANDBX-0101 @phase1_5
  Scenario: A sandbox reaches the model through the proxy while its network stays closed
    When an inference job POSTs /api/generate for the served model over the socket in INFERENCE_PROXY_URL
    Then the call answered 200 with generated text
    And the same job's direct TCP connection to the backend's port failed and it saw only "lo"
    And a job without use_inference finds no proxy socket and no INFERENCE_PROXY_URL

  @REQ-WORKER-0114 @REQ-WORKER-0145 @phase1_5
  Scenario: The inference proxy refuses oversize requests
    When an inference job sends an 11 MiB body to the proxy
    Then the proxy answered 413

  @REQ-ORCHES-0126 @REQ-ORCHES-0123 @phase1_5
  Scenario: A prompt task fails cleanly when the model is down
    Given the model server behind the node has been stopped
    When I create a task with the prompt "Say hi" and no input_mode
    Then within 120 seconds the task is "failed" and its stderr names the inference failure

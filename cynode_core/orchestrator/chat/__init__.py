"""The OpenAI-compatible chat surface behind the gateway (docs/wire_contract.md#chat; chat contract).

``wire`` reads OpenAI requests and writes OpenAI objects; ``inference``
reaches a model on a node (or a configured URL); ``turn`` runs one chat
turn from the request to the stored answer; ``streaming`` holds the
redaction hold-back and the think-tag split. No web framework here: the
views in ``api.chat`` call these.
"""

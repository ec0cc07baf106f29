"""OpenAI batch lines rewritten into Amazon Bedrock batch-inference records.

A Bedrock batch input line is ``{"recordId": ..., "modelInput": ...}`` with the model's native
InvokeModel body (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-data.html).
``BedrockRewriter`` makes one from each OpenAI chat-completions line, ``recordId`` being the
``custom_id``, for the two families it knows, recognised from the model id, a cross-region
inference-profile id (``us.``, ``eu.``, ``apac.``, ``global.``, ...) or the ARN of a foundation
model or system inference profile:

- Anthropic Claude (``anthropic.claude-*``): the Messages body with ``anthropic_version``
  ``bedrock-2023-05-31``; ``max_tokens`` defaults to ``CLAUDE_DEFAULT_MAX_TOKENS``, which Claude
  requires and every Claude model on Bedrock can produce.
- Amazon Nova (``amazon.nova-micro/lite/pro/premier-*``, ``amazon.nova-2-*``): the ``messages-v1``
  body with ``inferenceConfig`` (https://docs.aws.amazon.com/nova/latest/userguide/complete-request-schema.html);
  Nova Micro takes no images.

Lines already in Bedrock's format pass unchanged. Used by the upload path as::

    rewrite_lines(chunks, BedrockRewriter(default_model=model_header), max_line_bytes=settings.BATCH_LINE_MAX_BYTES)
"""

from __future__ import annotations

import re
from typing import Any

from providers.batch import line_error
from providers.batch_chat import ChatFamily, ChatRequest, ChatRewriter, ChatRules, Part, renamed

ANTHROPIC_VERSION = "bedrock-2023-05-31"
CLAUDE_DEFAULT_MAX_TOKENS = 4096
NOVA_SCHEMA_VERSION = "messages-v1"
# Both families read images of these four types only.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

_PROFILE = r"(?:(?:us|us-gov|eu|apac|jp|au|ca|global)\.)?"
_CLAUDE = re.compile(_PROFILE + r"anthropic\.claude-")
_NOVA = re.compile(_PROFILE + r"amazon\.nova-(?:2-)?(micro|lite|pro|premier)-")
# Foundation models and system inference profiles name the model in the ARN; application inference
# profiles and provisioned models do not, so their family cannot be told.
_ARN = re.compile(r"arn:aws[a-z-]*:bedrock:[a-z0-9-]*:[0-9]*:(?:foundation-model|inference-profile)/(.+)")

CLAUDE_PARAMS = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "stop": "stop_sequences"}
NOVA_PARAMS = {"max_tokens": "maxTokens", "temperature": "temperature", "top_p": "topP", "stop": "stopSequences"}


def _claude_body(number: int, request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"anthropic_version": ANTHROPIC_VERSION, "max_tokens": CLAUDE_DEFAULT_MAX_TOKENS}
    body.update(renamed(request.params, CLAUDE_PARAMS))
    if len(request.system) == 1:
        body["system"] = request.system[0]
    elif request.system:
        body["system"] = [{"type": "text", "text": text} for text in request.system]
    body["messages"] = [{"role": turn.role, "content": [_claude_part(p) for p in turn.parts]} for turn in request.turns]
    return body


def _claude_part(part: Part) -> dict[str, Any]:
    if part.image is None:
        return {"type": "text", "text": part.text}
    source = {"type": "base64", "media_type": part.image.media_type, "data": part.image.data}
    return {"type": "image", "source": source}


def _nova_body(number: int, request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"schemaVersion": NOVA_SCHEMA_VERSION}
    if request.system:
        body["system"] = [{"text": text} for text in request.system]
    body["messages"] = [{"role": turn.role, "content": [_nova_part(p) for p in turn.parts]} for turn in request.turns]
    if config := renamed(request.params, NOVA_PARAMS):
        body["inferenceConfig"] = config
    return body


def _nova_part(part: Part) -> dict[str, Any]:
    if part.image is None:
        return {"text": part.text}
    image_format = part.image.media_type.removeprefix("image/")
    return {"image": {"format": image_format, "source": {"bytes": part.image.data}}}


CLAUDE = ChatFamily(ChatRules("Claude on Bedrock", CLAUDE_PARAMS, 1.0, IMAGE_TYPES), _claude_body)
NOVA = ChatFamily(ChatRules("Amazon Nova on Bedrock", NOVA_PARAMS, 1.0, IMAGE_TYPES), _nova_body)
NOVA_MICRO = ChatFamily(ChatRules("Amazon Nova Micro on Bedrock", NOVA_PARAMS, 1.0, frozenset()), _nova_body)


class BedrockRewriter(ChatRewriter):
    """``providers.batch.Rewriter`` for Bedrock: ``{"recordId": custom_id, "modelInput": <native body>}``."""

    provider = "Bedrock"
    native_keys = frozenset({"recordId", "modelInput"})

    def family(self, number: int, model: str) -> ChatFamily:
        model_id = match.group(1) if (match := _ARN.fullmatch(model)) else model
        if _CLAUDE.match(model_id):
            return CLAUDE
        if nova := _NOVA.match(model_id):
            return NOVA_MICRO if nova.group(1) == "micro" else NOVA
        raise line_error(
            number,
            f"the model {model!r} is not one filegate can rewrite for Bedrock (Anthropic Claude or Amazon Nova, "
            "by model id, inference-profile id or ARN)",
        )

    def record(self, number: int, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"recordId": custom_id, "modelInput": body}

    def check_native(self, number: int, line: dict[str, Any]) -> str | None:
        for key in line:
            if key not in self.native_keys:
                raise line_error(number, f"'{key}' is not a field of a Bedrock record (recordId, modelInput)")
        if not isinstance(line.get("modelInput"), dict):
            raise line_error(number, "'modelInput' must be a JSON object")
        record_id = line.get("recordId")
        if "recordId" in line and (not isinstance(record_id, str) or not record_id):
            raise line_error(number, "'recordId' must be a non-empty string")
        return record_id

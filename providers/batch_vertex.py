"""OpenAI batch lines rewritten into Vertex AI batch-prediction requests for Gemini.

A Vertex batch input line is ``{"request": <GenerateContentRequest>}``
(https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-from-cloud-storage).
``VertexRewriter`` makes one from each OpenAI chat-completions line for Gemini models (``gemini-*``,
also as ``publishers/google/models/gemini-*`` or the full resource name): ``contents`` with roles
``user`` and ``model``, ``systemInstruction`` and ``generationConfig``.

Vertex batch lines have no id field, so the ``custom_id`` travels in ``request.labels``, which
Vertex copies into each output line: its UTF-8 bytes in lowercase base32 without padding, cut into
values of at most 63 characters under the keys ``custom_id_0``, ``custom_id_1``, ... (label keys
and values allow only lowercase letters, digits, ``_`` and ``-``, at most 63 characters, and at
most 64 labels). ``decode_custom_id(labels)`` gives the original back exactly. Ids longer than
``MAX_CUSTOM_ID_BYTES`` do not fit and are refused.

Lines already in Vertex's format pass unchanged. Used by the upload path as::

    rewrite_lines(chunks, VertexRewriter(default_model=model_header), max_line_bytes=settings.BATCH_LINE_MAX_BYTES)
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from providers.batch import line_error
from providers.batch_chat import ChatFamily, ChatRequest, ChatRewriter, ChatRules, Part, renamed

LABEL_KEY = "custom_id_{}"
LABEL_VALUE_MAX = 63
MAX_LABELS = 64
MAX_CUSTOM_ID_BYTES = MAX_LABELS * LABEL_VALUE_MAX * 5 // 8  # base32: 5 bits a character

_GEMINI = re.compile(r"(?:google/|(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/)?gemini-[\w.-]+")

# GenerationConfig field names (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/GenerationConfig).
GEMINI_CONFIG = {
    "max_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "stop": "stopSequences",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
GEMINI_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})


def encode_custom_id(custom_id: str) -> dict[str, str]:
    """The labels that carry ``custom_id``; raises ``ValueError`` if it needs more than 64 of them."""
    encoded = base64.b32encode(custom_id.encode("utf-8", "surrogatepass")).decode("ascii").rstrip("=").lower()
    values = [encoded[start : start + LABEL_VALUE_MAX] for start in range(0, len(encoded), LABEL_VALUE_MAX)]
    if len(values) > MAX_LABELS:
        raise ValueError(f"custom_id is longer than {MAX_CUSTOM_ID_BYTES} bytes")
    return {LABEL_KEY.format(index): value for index, value in enumerate(values)}


def decode_custom_id(labels: Mapping[str, str]) -> str | None:
    """The ``custom_id`` carried by a request's (or an output line's) ``labels``, ``None`` if none.

    Raises ``ValueError`` if the ``custom_id_*`` labels are not an encoding ``encode_custom_id`` made.
    """
    values: list[str] = []
    while (value := labels.get(LABEL_KEY.format(len(values)))) is not None:
        values.append(value)
    if not values:
        return None
    encoded = "".join(values).upper()
    try:
        return base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("the custom_id labels are not a valid encoding") from exc


def _gemini_body(number: int, request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": [_content(turn.role, turn.parts) for turn in request.turns]}
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": text} for text in request.system]}
    config = renamed(request.params, GEMINI_CONFIG)
    if "response_format" in request.params:
        config.update(_response_format(number, request.params["response_format"]))
    if config:
        body["generationConfig"] = config
    return body


def _content(role: str, parts: list[Part]) -> dict[str, Any]:
    return {"role": "model" if role == "assistant" else "user", "parts": [_part(part) for part in parts]}


def _part(part: Part) -> dict[str, Any]:
    if part.image is None:
        return {"text": part.text}
    if part.image.uri:
        return {"fileData": {"mimeType": part.image.media_type, "fileUri": part.image.uri}}
    return {"inlineData": {"mimeType": part.image.media_type, "data": part.image.data}}


def _response_format(number: int, value: Any) -> dict[str, Any]:
    """``responseMimeType`` (and ``responseJsonSchema``) for OpenAI's ``response_format``.

    Gemini always holds its output to the schema, so ``strict`` false is honoured by doing more;
    ``json_schema.name`` only names the schema for OpenAI and is not needed.
    """
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object") and set(value) == {"type"}:
        return {"responseMimeType": "application/json"} if kind == "json_object" else {}
    spec = value.get("json_schema") if kind == "json_schema" and set(value) == {"type", "json_schema"} else None
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise line_error(
            number,
            'body.response_format must be {"type": "text"}, {"type": "json_object"} or '
            '{"type": "json_schema", "json_schema": {"name", "schema", "strict"}} for Gemini on Vertex',
        )
    for key in spec:
        if key not in ("name", "schema", "strict"):
            raise line_error(number, f"body.response_format.json_schema.{key} is not supported for Gemini on Vertex")
    return {"responseMimeType": "application/json", "responseJsonSchema": spec["schema"]}


GEMINI_RULES = ChatRules(
    "Gemini on Vertex",
    {**GEMINI_CONFIG, "response_format": "responseMimeType"},
    2.0,
    GEMINI_IMAGE_TYPES,
    frozenset({"data", "gs"}),
)
GEMINI = ChatFamily(GEMINI_RULES, _gemini_body)


class VertexRewriter(ChatRewriter):
    """``providers.batch.Rewriter`` for Vertex: ``{"request": <GenerateContentRequest with custom_id labels>}``."""

    provider = "Vertex"
    native_keys = frozenset({"request"})

    def family(self, number: int, model: str) -> ChatFamily:
        if _GEMINI.fullmatch(model):
            return GEMINI
        raise line_error(number, f"the model {model!r} is not one filegate can rewrite for Vertex (Gemini models only)")

    def record(self, number: int, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            labels = encode_custom_id(custom_id)
        except ValueError:
            raise line_error(
                number, f"'custom_id' is too long for Vertex: at most {MAX_CUSTOM_ID_BYTES} bytes"
            ) from None
        return {"request": {**body, "labels": labels}}

    def check_native(self, number: int, line: dict[str, Any]) -> str | None:
        for key in line:
            if key != "request":
                raise line_error(number, f"'{key}' is not a field of a Vertex batch line (request)")
        request = line["request"]
        if not isinstance(request, dict) or not isinstance(request.get("contents"), list) or not request["contents"]:
            raise line_error(number, "'request' must be a GenerateContentRequest with a non-empty 'contents' list")
        labels = request.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise line_error(number, "'request.labels' must map label keys to string values")
        try:
            return decode_custom_id(labels)
        except ValueError:
            raise line_error(
                number, "'request.labels' holds custom_id_* labels that are not a custom_id encoding"
            ) from None

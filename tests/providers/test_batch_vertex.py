"""OpenAI batch lines rewritten for Vertex AI (Gemini): every supported field and content type, every
refusal, and custom_id carried in request labels and recovered exactly.

Output shapes are checked against the field names Vertex AI's v1 REST reference documents:
GenerateContentRequest (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints/generateContent),
Content and Part (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/Content),
GenerationConfig (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/GenerationConfig) and the
label rules of that request's ``labels`` field.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.batch import rewrite_lines
from providers.batch_vertex import MAX_CUSTOM_ID_BYTES, VertexRewriter, decode_custom_id, encode_custom_id
from tests.providers.batch_files import MIB, PNG, image, openai_line, refusal, rewritten, user

GEMINI = "gemini-2.5-flash"
REQUEST_FIELDS = {"contents", "systemInstruction", "cachedContent", "tools", "toolConfig", "labels", "safetySettings",
                  "generationConfig", "modelArmorConfig"}  # fmt: skip
PART_DATA_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                    "codeExecutionResult"}  # fmt: skip
GENERATION_CONFIG_FIELDS = {
    "temperature": float, "topP": float, "topK": float, "candidateCount": int, "maxOutputTokens": int,
    "stopSequences": list, "responseLogprobs": bool, "logprobs": int, "presencePenalty": float,
    "frequencyPenalty": float, "seed": int, "responseMimeType": str, "responseSchema": dict,
    "responseJsonSchema": dict,
}  # fmt: skip
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def assert_labels_valid(labels: dict[str, str]) -> None:
    assert len(labels) <= 64
    assert all(LABEL_KEY.fullmatch(key) and LABEL_VALUE.fullmatch(value) for key, value in labels.items()), labels


def assert_part_valid(part: dict[str, Any]) -> None:
    [field] = part.keys() & PART_DATA_FIELDS  # a Part holds exactly one kind of data
    assert set(part) == {field}
    if field == "text":
        assert isinstance(part["text"], str) and part["text"]
    elif field == "inlineData":
        assert set(part[field]) == {"mimeType", "data"}
    else:
        assert set(part[field]) == {"mimeType", "fileUri"}
        assert part[field]["fileUri"].startswith("gs://")


def assert_request_valid(request: dict[str, Any]) -> None:
    assert set(request) <= REQUEST_FIELDS
    for content in request["contents"]:
        assert set(content) == {"role", "parts"} and content["role"] in ("user", "model")
        for part in content["parts"]:
            assert_part_valid(part)
    roles = [content["role"] for content in request["contents"]]
    assert roles[0] == "user" and all(a != b for a, b in itertools.pairwise(roles))
    if "systemInstruction" in request:
        assert set(request["systemInstruction"]) == {"parts"}
        assert all(set(part) == {"text"} for part in request["systemInstruction"]["parts"])
    for key, value in request.get("generationConfig", {}).items():
        wanted = GENERATION_CONFIG_FIELDS[key]
        assert isinstance(value, int | float) if wanted is float else isinstance(value, wanted), (key, value)
    assert_labels_valid(request["labels"])


def rewrite_one(body: dict[str, Any], model: str = GEMINI) -> dict[str, Any]:
    [record] = rewritten(VertexRewriter(), openai_line({"model": model, **body}))
    assert set(record) == {"request"}
    request = record["request"]
    assert_request_valid(request)
    assert decode_custom_id(request.pop("labels")) == "req-1"
    return request


def contents(*turns: tuple[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"role": role, "parts": parts} for role, parts in turns]


HI = [user("hi")]
GEMINI_IMAGES = ("png", "jpeg", "webp", "heic", "heif")
G_HI = contents(("user", [{"text": "hi"}]))
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}

# fmt: off
CASES = [
    ("text only", {"messages": HI}, {"contents": G_HI}),
    ("max_tokens", {"messages": HI, "max_tokens": 50}, {"contents": G_HI, "generationConfig": {"maxOutputTokens": 50}}),
    ("max_completion_tokens", {"messages": HI, "max_completion_tokens": 5},
     {"contents": G_HI, "generationConfig": {"maxOutputTokens": 5}}),
    ("sampling", {"messages": HI, "temperature": 2, "top_p": 0.5, "seed": -3, "presence_penalty": -2,
                  "frequency_penalty": 1.5},
     {"contents": G_HI, "generationConfig": {"temperature": 2, "topP": 0.5, "seed": -3, "presencePenalty": -2,
                                             "frequencyPenalty": 1.5}}),
    ("n", {"messages": HI, "n": 3}, {"contents": G_HI, "generationConfig": {"candidateCount": 3}}),
    ("stop", {"messages": HI, "stop": "END"}, {"contents": G_HI, "generationConfig": {"stopSequences": ["END"]}}),
    ("stop list", {"messages": HI, "stop": ["a", "b"]},
     {"contents": G_HI, "generationConfig": {"stopSequences": ["a", "b"]}}),
    ("response_format text", {"messages": HI, "response_format": {"type": "text"}}, {"contents": G_HI}),
    ("response_format json_object", {"messages": HI, "response_format": {"type": "json_object"}},
     {"contents": G_HI, "generationConfig": {"responseMimeType": "application/json"}}),
    ("response_format json_schema", {"messages": HI, "response_format": {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}},
     {"contents": G_HI, "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}}),
    ("response_format json_schema not strict", {"messages": HI, "response_format": {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": False}}},
     {"contents": G_HI, "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}}),
    ("system and developer", {"messages": [{"role": "system", "content": "A"}, *HI,
                                           {"role": "developer", "content": [{"type": "text", "text": "B"}]}]},
     {"contents": G_HI, "systemInstruction": {"parts": [{"text": "A"}, {"text": "B"}]}}),
    ("roles and merging", {"messages": [user("a"), user("b"), {"role": "assistant", "content": "c"},
                                        {"role": "assistant", "content": "d"}, user("e")]},
     {"contents": contents(("user", [{"text": "a"}, {"text": "b"}]), ("model", [{"text": "c"}, {"text": "d"}]),
                           ("user", [{"text": "e"}]))}),
    ("inline images", {"messages": [user([{"type": "text", "text": "what?"}] + [
        image(f"data:image/{kind};base64,{PNG}", detail="auto") for kind in GEMINI_IMAGES])]},
     {"contents": contents(("user", [{"text": "what?"}] + [
         {"inlineData": {"mimeType": f"image/{kind}", "data": PNG}} for kind in GEMINI_IMAGES]))}),
    ("gs images", {"messages": [user([image("gs://b/cat.PNG", detail="high"), image("gs://b/a/dog.jpg"),
                                      image("gs://b/x.jpeg"), image("gs://b/x.webp")])]},
     {"contents": contents(("user", [{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.PNG"}},
                                     {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/a/dog.jpg"}},
                                     {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/x.jpeg"}},
                                     {"fileData": {"mimeType": "image/webp", "fileUri": "gs://b/x.webp"}}]))}),
    ("ignored and default-valued fields", {"messages": HI, "user": "u", "safety_identifier": "s", "stream": False,
                                           "store": False, "logprobs": False, "seed": None},
     {"contents": G_HI}),
]
# fmt: on


@pytest.mark.parametrize(("name", "body", "expected"), CASES, ids=[case[0] for case in CASES])
def test_it_rewrites_every_supported_field_and_content_type(name: str, body: dict[str, Any], expected: Any) -> None:
    assert rewrite_one(body) == expected


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-flash",
        "gemini-2.0-flash-001",
        "gemini-1.5-pro-002",
        "google/gemini-2.5-pro",
        "publishers/google/models/gemini-2.5-pro",
        "projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash-lite",
    ],
)
def test_it_recognises_gemini_models_however_they_are_named(model: str) -> None:
    assert rewrite_one({"messages": HI}, model=model) == {"contents": G_HI}


@pytest.mark.parametrize(
    "model",
    [
        "claude-3-5-sonnet@20240620",
        "publishers/anthropic/models/claude-3-5-sonnet",
        "meta/llama-3.1-405b-instruct-maas",
        "projects/p/locations/us-central1/endpoints/1234567890",
        "text-bison",
        "gemma-2-9b-it",
        "gpt-4o",
    ],
)
def test_it_refuses_other_model_families(model: str) -> None:
    message = refusal(VertexRewriter(), openai_line({"model": model, "messages": HI}))
    assert message == (
        f"Invalid batch file: line 1: the model {model!r} is not one filegate can rewrite for Vertex "
        "(Gemini models only)."
    )


# fmt: off
REFUSALS = [
    ({"tools": []}, "body.tools is not supported for Gemini on Vertex"),
    ({"tool_choice": "none"}, "body.tool_choice is not supported for Gemini on Vertex"),
    ({"logprobs": True}, "body.logprobs is not supported for Gemini on Vertex"),
    ({"top_logprobs": 1}, "body.top_logprobs is not supported for Gemini on Vertex"),
    ({"stream": True}, "body.stream is not supported for Gemini on Vertex"),
    ({"logit_bias": {}}, "body.logit_bias is not supported for Gemini on Vertex"),
    ({"reasoning_effort": "high"}, "body.reasoning_effort is not supported for Gemini on Vertex"),
    ({"temperature": 2.5}, "body.temperature must be a number from 0 to 2 for Gemini on Vertex"),
    ({"n": 0}, "body.n must be a positive integer"),
    ({"seed": 1.5}, "body.seed must be an integer"),
    ({"presence_penalty": 3}, "body.presence_penalty must be a number from -2 to 2"),
    ({"frequency_penalty": "x"}, "body.frequency_penalty must be a number from -2 to 2"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA, "description": "d"}}},
     "body.response_format.json_schema.description is not supported for Gemini on Vertex"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}, "body.response_format must be"),
    ({"response_format": {"type": "json_schema", "json_schema": "a"}}, "body.response_format must be"),
    ({"response_format": {"type": "xml"}}, "body.response_format must be"),
    ({"response_format": {"type": "text", "extra": 1}}, "body.response_format must be"),
    ({"response_format": "json"}, "body.response_format must be"),
    ({"messages": [user([image("https://example.com/cat.png")])]},
     "body.messages[0].content[0].image_url.url: Gemini on Vertex cannot fetch https image URLs; "
     "send a base64 data: URL or a gs:// URI"),
    ({"messages": [user([image("s3://bucket/cat.png")])]},
     "body.messages[0].content[0].image_url.url: Gemini on Vertex cannot fetch s3 image URLs; "
     "send a base64 data: URL or a gs:// URI"),
    ({"messages": [user([image(f"data:image/gif;base64,{PNG}")])]},
     "body.messages[0].content[0].image_url.url: image/gif images are not supported for Gemini on Vertex "
     "(only heic, heif, jpeg, png, webp)"),
    ({"messages": [user([image("gs://bucket/cat.gif")])]},
     "body.messages[0].content[0].image_url.url: image/gif images are not supported for Gemini on Vertex"),
    ({"messages": [user([image("gs://bucket.png/cat")])]},
     "body.messages[0].content[0].image_url.url must end in an image extension (.png, .jpeg, ...) telling its type"),
    ({"messages": [user([{"type": "input_audio", "input_audio": {"data": "", "format": "mp3"}}])]},
     "body.messages[0].content[0].type 'input_audio' is not supported for Gemini on Vertex in this message"),
    ({"messages": [{"role": "model", "content": "a"}]}, "body.messages[0].role 'model' is not supported"),
]
# fmt: on


@pytest.mark.parametrize(("body", "message"), REFUSALS, ids=[str(n) for n in range(len(REFUSALS))])
def test_it_refuses_what_it_cannot_express_naming_the_line_and_field(body: dict[str, Any], message: str) -> None:
    lines = [
        openai_line({"model": GEMINI, "messages": HI}, "ok"),
        openai_line({"model": GEMINI, "messages": HI, **body}),
    ]
    assert refusal(VertexRewriter(), *lines).startswith(f"Invalid batch file: line 2: {message}")


def test_it_refuses_other_endpoints_and_a_second_model() -> None:
    embeddings = openai_line({"model": GEMINI, "input": "x"}, url="/v1/embeddings")
    assert refusal(VertexRewriter(), embeddings) == (
        "Invalid batch file: line 1: 'url' /v1/embeddings cannot be rewritten for Vertex, only /v1/chat/completions."
    )
    lines = [openai_line({"messages": HI}, "a"), openai_line({"model": "gemini-2.5-pro", "messages": HI}, "b")]
    assert refusal(VertexRewriter(default_model=GEMINI), *lines) == (
        "Invalid batch file: line 2: body.model 'gemini-2.5-pro' differs from 'gemini-2.5-flash' before it: "
        "a Vertex batch job runs one model."
    )


# custom_id in labels.

IDS = st.text(st.characters(exclude_categories=()), min_size=1, max_size=MAX_CUSTOM_ID_BYTES // 4)


@given(IDS)
def test_custom_id_labels_are_label_safe_and_give_the_id_back_exactly(custom_id: str) -> None:
    labels = encode_custom_id(custom_id)
    assert_labels_valid(labels)
    assert decode_custom_id(labels) == custom_id
    assert decode_custom_id({**labels, "team": "research", "custom_id": "x"}) == custom_id


@given(st.binary(min_size=MAX_CUSTOM_ID_BYTES - 8, max_size=MAX_CUSTOM_ID_BYTES).map(lambda b: b.hex()[: len(b)]))
def test_the_longest_custom_ids_fit_in_64_labels(custom_id: str) -> None:
    labels = encode_custom_id(custom_id)
    assert len(labels) <= 64
    assert_labels_valid(labels)
    assert decode_custom_id(labels) == custom_id


def test_the_labels_carry_the_custom_id_through_a_rewrite() -> None:
    ids = ["Req #1 — ünïcode 😀", "a" * MAX_CUSTOM_ID_BYTES, "UPPER/lower:mixed"]
    records = rewritten(VertexRewriter(default_model=GEMINI), *(openai_line({"messages": HI}, i) for i in ids))
    assert [decode_custom_id(record["request"]["labels"]) for record in records] == ids
    assert len(records[1]["request"]["labels"]) == 64


def test_a_custom_id_too_long_for_the_labels_is_refused() -> None:
    line = openai_line({"model": GEMINI, "messages": HI}, "a" * (MAX_CUSTOM_ID_BYTES + 1))
    assert refusal(VertexRewriter(), line) == (
        f"Invalid batch file: line 1: 'custom_id' is too long for Vertex: at most {MAX_CUSTOM_ID_BYTES} bytes."
    )


@pytest.mark.parametrize("labels", [{}, {"team": "x"}, {"custom_id_1": "aa"}])
def test_labels_without_a_custom_id_give_none(labels: dict[str, str]) -> None:
    assert decode_custom_id(labels) is None


@pytest.mark.parametrize("value", ["a", "abc", "0189"])
def test_labels_that_are_no_encoding_are_an_error(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid encoding"):
        decode_custom_id({"custom_id_0": value})


# Native lines.


def test_native_requests_pass_unchanged_between_rewritten_lines() -> None:
    native = b'{"request": {"contents": [{"role": "user", "parts": [{"text": "native"}]}], "labels": {"team": "x"}}}'
    content = openai_line({"model": GEMINI, "messages": HI}, "a") + native + b"\n"
    output = b"".join(rewrite_lines([content], VertexRewriter(), max_line_bytes=MIB)).split(b"\n")
    assert output[1] == native and output[2] == b""


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"request": {"contents": []}}', "'request' must be a GenerateContentRequest with a non-empty 'contents'"),
        (b'{"request": {"generationConfig": {}}}', "'request' must be a GenerateContentRequest with a non-empty"),
        (b'{"request": "text"}', "'request' must be a GenerateContentRequest with a non-empty 'contents' list"),
        (b'{"request": {"contents": [{}]}, "key": "k"}', "'key' is not a field of a Vertex batch line (request)"),
        (b'{"request": {"contents": [{}], "labels": ["a"]}}', "'request.labels' must map label keys to string values"),
        (b'{"request": {"contents": [{}], "labels": {"a": 1}}}', "'request.labels' must map label keys to string"),
        (b'{"request": {"contents": [{}], "labels": {"custom_id_0": "a"}}}',
         "'request.labels' holds custom_id_* labels that are not a custom_id encoding"),
        (b'{"request": {"contents": [{}], "labels": {"custom_id_0": "me"}}}',
         "'request id' 'a' is used by an earlier line"),
    ],
)  # fmt: skip
def test_it_checks_the_shape_of_native_requests(line: bytes, message: str) -> None:
    content = openai_line({"model": GEMINI, "messages": HI}, "a") + line
    assert refusal(VertexRewriter(), content).startswith(f"Invalid batch file: line 2: {message}")

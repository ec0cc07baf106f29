"""OpenAI batch lines rewritten for Bedrock: every supported field and content type, every refusal.

What comes out is checked against something real: Claude bodies against the ``anthropic`` SDK's
``MessageCreateParamsNonStreaming`` (unknown keys refused), Nova bodies against botocore's model of
Bedrock's Converse request, whose shape Nova's InvokeModel body shares apart from base64 bytes and
``schemaVersion`` (https://docs.aws.amazon.com/nova/latest/userguide/complete-request-schema.html).
"""

from __future__ import annotations

import base64
import copy
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from botocore.validate import ParamValidator
from typing_extensions import is_typeddict

from providers.batch import rewrite_lines
from providers.batch_bedrock import ANTHROPIC_VERSION, CLAUDE_DEFAULT_MAX_TOKENS, BedrockRewriter
from tests.providers.batch_files import PNG, image, openai_line, refusal, rewritten, user

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
NOVA = "amazon.nova-pro-v1:0"
NOVA_MICRO = "us.amazon.nova-micro-v1:0"
SAMPLING = {"temperature", "top_p"}
FAMILY = {CLAUDE: "Claude on Bedrock", NOVA: "Amazon Nova on Bedrock"}
CONVERSE_REQUEST = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("Converse")
IMAGE_FORMATS = (
    CONVERSE_REQUEST.input_shape.members["messages"]
    .member.members["content"]
    .member.members["image"]
    .members["format"]
    .enum
)


def assert_fits(value: Any, hint: Any, path: str = "body") -> None:
    """Assert that ``value`` is what the SDK type ``hint`` allows, TypedDict keys checked both ways."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Required, typing.NotRequired, typing.Annotated):
        return assert_fits(value, args[0], path)
    if origin in (typing.Union, types.UnionType):
        failures = []
        for option in args:
            try:
                return assert_fits(value, option, path)
            except AssertionError as failure:
                failures.append(str(failure))
        raise AssertionError(f"{path}: {value!r} fits none of {hint}: {failures}")
    if origin is typing.Literal:
        assert value in args, f"{path}: {value!r} not in {args}"
    elif is_typeddict(hint):
        assert isinstance(value, dict), f"{path}: {value!r} is not an object"
        fields = typing.get_type_hints(hint, include_extras=True)
        required = {key for key, item in fields.items() if typing.get_origin(item) is typing.Required}
        assert set(value) <= set(fields), f"{path}: unknown keys {set(value) - set(fields)}"
        assert required <= set(value), f"{path}: missing {required - set(value)}"
        for key, item in value.items():
            assert_fits(item, fields[key], f"{path}.{key}")
    elif origin is not None and len(args) == 1:  # Iterable[X], SequenceNotStr[X]
        assert isinstance(value, list), f"{path}: {value!r} is not a list"
        for index, item in enumerate(value):
            assert_fits(item, args[0], f"{path}[{index}]")
    elif hint is float:
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{path}: {value!r}"
    elif hint in (str, int, bool):
        assert type(value) is hint, f"{path}: {value!r} is not {hint}"
    else:
        raise AssertionError(f"{path}: {value!r} is not a {hint}")


def assert_valid_model_input(model: str, model_input: dict[str, Any]) -> None:
    if "anthropic_version" in model_input:
        assert model_input["anthropic_version"] == ANTHROPIC_VERSION
        # The SDK dropped temperature and top_p from its types (anthropic 1.0): the API still takes them
        # on the Claude models that sample, the newest ones refuse them. Checked here by hand instead.
        params = {key: value for key, value in model_input.items() if key not in SAMPLING | {"anthropic_version"}}
        assert all(0 <= model_input[key] <= 1 for key in SAMPLING & set(model_input))
        assert_fits({**params, "model": model}, MessageCreateParamsNonStreaming)
        return
    assert model_input.pop("schemaVersion") == "messages-v1"
    for message in model_input["messages"]:
        for block in message["content"]:
            if "image" in block:
                assert block["image"]["format"] in IMAGE_FORMATS  # botocore does not check enums
                block["image"]["source"]["bytes"] = base64.b64decode(block["image"]["source"]["bytes"], validate=True)
    report = ParamValidator().validate({**model_input, "modelId": model}, CONVERSE_REQUEST.input_shape)
    assert not report.has_errors(), report.generate_report()


def rewrite_one(model: str, body: dict[str, Any]) -> dict[str, Any]:
    [record] = rewritten(BedrockRewriter(), openai_line({"model": model, **body}))
    assert record["recordId"] == "req-1" and set(record) == {"recordId", "modelInput"}
    assert_valid_model_input(model, copy.deepcopy(record["modelInput"]))
    return record["modelInput"]


def claude(messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": CLAUDE_DEFAULT_MAX_TOKENS,
        **params,
        "messages": messages,
    }


def nova(messages: list[dict[str, Any]], system: list[str] | None = None, **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemaVersion": "messages-v1"}
    if system:
        body["system"] = [{"text": text} for text in system]
    body["messages"] = messages
    return {**body, "inferenceConfig": config} if config else body


def text(value: str, family: str) -> dict[str, Any]:
    return {"type": "text", "text": value} if family == CLAUDE else {"text": value}


def turn(role: str, *texts: str, family: str) -> dict[str, Any]:
    return {"role": role, "content": [text(value, family) for value in texts]}


def png_block(family: str, media_type: str = "image/png") -> dict[str, Any]:
    if family == CLAUDE:
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": PNG}}
    return {"image": {"format": media_type.removeprefix("image/"), "source": {"bytes": PNG}}}


@dataclass
class Case:
    name: str
    body: dict[str, Any]
    claude: dict[str, Any]
    nova: dict[str, Any]
    families: list[str] = field(default_factory=lambda: [CLAUDE, NOVA])


HI = [user("hi")]
C_HI = [turn("user", "hi", family=CLAUDE)]
N_HI = [turn("user", "hi", family=NOVA)]

# fmt: off
CASES = [
    Case("text only", {"messages": HI}, claude(C_HI), nova(N_HI)),
    Case("max_tokens", {"messages": HI, "max_tokens": 100}, claude(C_HI, max_tokens=100), nova(N_HI, maxTokens=100)),
    Case("max_completion_tokens", {"messages": HI, "max_completion_tokens": 7},
         claude(C_HI, max_tokens=7), nova(N_HI, maxTokens=7)),
    Case("both token limits agreeing", {"messages": HI, "max_tokens": 7, "max_completion_tokens": 7},
         claude(C_HI, max_tokens=7), nova(N_HI, maxTokens=7)),
    Case("temperature and top_p", {"messages": HI, "temperature": 0.25, "top_p": 1},
         claude(C_HI, temperature=0.25, top_p=1), nova(N_HI, temperature=0.25, topP=1)),
    Case("temperature at its bounds", {"messages": HI, "temperature": 1, "top_p": 0},
         claude(C_HI, temperature=1, top_p=0), nova(N_HI, temperature=1, topP=0)),
    Case("stop as a string", {"messages": HI, "stop": "END"},
         claude(C_HI, stop_sequences=["END"]), nova(N_HI, stopSequences=["END"])),
    Case("stop as a list", {"messages": HI, "stop": ["a", "b", "c", "d"]},
         claude(C_HI, stop_sequences=["a", "b", "c", "d"]), nova(N_HI, stopSequences=["a", "b", "c", "d"])),
    Case("system message", {"messages": [{"role": "system", "content": "Be brief."}, *HI]},
         claude(C_HI, system="Be brief."), nova(N_HI, system=["Be brief."])),
    Case("developer message as parts", {"messages": [
             {"role": "developer", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}, *HI]},
         claude(C_HI, system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]),
         nova(N_HI, system=["A", "B"])),
    Case("system messages anywhere are lifted in order", {"messages": [
             {"role": "system", "content": "A"}, user("hi"), {"role": "system", "content": "B"}]},
         claude(C_HI, system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]),
         nova(N_HI, system=["A", "B"])),
    Case("consecutive same-role messages merge", {"messages": [
             user("a"), user([{"type": "text", "text": "b"}]), {"role": "assistant", "content": "c"},
             {"role": "assistant", "content": [{"type": "text", "text": "d"}]}, user("e")]},
         claude([turn("user", "a", "b", family=CLAUDE), turn("assistant", "c", "d", family=CLAUDE),
                 turn("user", "e", family=CLAUDE)]),
         nova([turn("user", "a", "b", family=NOVA), turn("assistant", "c", "d", family=NOVA),
               turn("user", "e", family=NOVA)])),
    Case("assistant prefill last", {"messages": [user("hi"), {"role": "assistant", "content": "The answer is"}]},
         claude([*C_HI, turn("assistant", "The answer is", family=CLAUDE)]),
         nova([*N_HI, turn("assistant", "The answer is", family=NOVA)])),
    Case("text and image parts", {"messages": [user([{"type": "text", "text": "what?"},
                                                     image(f"data:image/png;base64,{PNG}", detail="high")])]},
         claude([{"role": "user", "content": [text("what?", CLAUDE), png_block(CLAUDE)]}]),
         nova([{"role": "user", "content": [text("what?", NOVA), png_block(NOVA)]}])),
    *[Case(f"{kind} image", {"messages": [user([image(f"data:image/{kind};base64,{PNG}", detail="auto")])]},
           claude([{"role": "user", "content": [png_block(CLAUDE, f"image/{kind}")]}]),
           nova([{"role": "user", "content": [png_block(NOVA, f"image/{kind}")]}]))
      for kind in ("jpeg", "gif", "webp")],
    Case("ignored and default-valued fields", {"messages": HI, "user": "u-1", "safety_identifier": "s", "stream": False,
                                               "store": False, "n": 1, "logprobs": False, "temperature": None,
                                               "tools": None},
         claude(C_HI), nova(N_HI)),
    Case("non-ASCII text", {"messages": [user("héllo 😀")]},
         claude([turn("user", "héllo 😀", family=CLAUDE)]), nova([turn("user", "héllo 😀", family=NOVA)])),
]
# fmt: on


@pytest.mark.parametrize("family", [CLAUDE, NOVA], ids=["claude", "nova"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_it_rewrites_every_supported_field_and_content_type(case: Case, family: str) -> None:
    assert rewrite_one(family, case.body) == (case.claude if family == CLAUDE else case.nova)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", "claude"),
        ("anthropic.claude-v2:1", "claude"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude"),
        ("eu.anthropic.claude-3-5-sonnet-20240620-v1:0", "claude"),
        ("apac.anthropic.claude-sonnet-4-20250514-v1:0", "claude"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude"),
        ("us-gov.anthropic.claude-3-haiku-20240307-v1:0", "claude"),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", "claude"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "claude",
        ),
        (
            "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:inference-profile/us-gov.anthropic.claude-3-haiku-v1:0",
            "claude",
        ),
        ("amazon.nova-lite-v1:0", "nova"),
        ("amazon.nova-premier-v1:0", "nova"),
        ("us.amazon.nova-pro-v1:0", "nova"),
        ("global.amazon.nova-2-lite-v1:0", "nova"),
        ("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0", "nova"),
        ("amazon.nova-micro-v1:0", "nova"),
    ],
)
def test_it_tells_the_family_from_model_ids_profiles_and_arns(model: str, family: str) -> None:
    model_input = rewrite_one(model, {"messages": HI})
    assert ("anthropic_version" in model_input, "schemaVersion" in model_input) == (
        family == "claude",
        family == "nova",
    )


@pytest.mark.parametrize(
    "model",
    [
        "amazon.nova-canvas-v1:0",
        "amazon.nova-reel-v1:0",
        "amazon.nova-sonic-v1:0",
        "amazon.titan-text-express-v1",
        "meta.llama3-70b-instruct-v1:0",
        "mistral.mistral-large-2402-v1:0",
        "claude-3-5-sonnet-20240620",
        "xx.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdef",
        "gpt-4o-mini",
    ],
)
def test_it_refuses_models_of_other_families(model: str) -> None:
    message = refusal(BedrockRewriter(), openai_line({"model": model, "messages": HI}))
    assert message == (
        f"Invalid batch file: line 1: the model {model!r} is not one filegate can rewrite for Bedrock "
        "(Anthropic Claude or Amazon Nova, by model id, inference-profile id or ARN)."
    )


# fmt: off
REFUSALS = [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "body.tools is not supported for {family}"),
    ({"tool_choice": "auto"}, "body.tool_choice is not supported for {family}"),
    ({"functions": []}, "body.functions is not supported for {family}"),
    ({"parallel_tool_calls": True}, "body.parallel_tool_calls is not supported for {family}"),
    ({"n": 2}, "body.n is not supported for {family}"),
    ({"logprobs": True}, "body.logprobs is not supported for {family}"),
    ({"top_logprobs": 2}, "body.top_logprobs is not supported for {family}"),
    ({"stream": True}, "body.stream is not supported for {family}"),
    ({"store": True}, "body.store is not supported for {family}"),
    ({"response_format": {"type": "json_object"}}, "body.response_format is not supported for {family}"),
    ({"seed": 1}, "body.seed is not supported for {family}"),
    ({"presence_penalty": 0.5}, "body.presence_penalty is not supported for {family}"),
    ({"frequency_penalty": 0.5}, "body.frequency_penalty is not supported for {family}"),
    ({"logit_bias": {"1": 2}}, "body.logit_bias is not supported for {family}"),
    ({"metadata": {"a": "b"}}, "body.metadata is not supported for {family}"),
    ({"modalities": ["text"]}, "body.modalities is not supported for {family}"),
    ({"audio": {"voice": "alloy"}}, "body.audio is not supported for {family}"),
    ({"reasoning_effort": "low"}, "body.reasoning_effort is not supported for {family}"),
    ({"service_tier": "auto"}, "body.service_tier is not supported for {family}"),
    ({"temperature": 1.5}, "body.temperature must be a number from 0 to 1 for {family}"),
    ({"temperature": "warm"}, "body.temperature must be a number from 0 to 1 for {family}"),
    ({"temperature": True}, "body.temperature must be a number from 0 to 1 for {family}"),
    ({"top_p": 1.01}, "body.top_p must be a number from 0 to 1"),
    ({"max_tokens": 0}, "body.max_tokens must be a positive integer"),
    ({"max_tokens": "5"}, "body.max_tokens must be a positive integer"),
    ({"max_completion_tokens": 2.5}, "body.max_completion_tokens must be a positive integer"),
    ({"max_tokens": 10, "max_completion_tokens": 20}, "body.max_tokens and body.max_completion_tokens disagree"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "body.stop must be a string or a list of 1 to 4 strings"),
    ({"stop": [1]}, "body.stop must be a string or a list of 1 to 4 strings"),
    ({"stop": []}, "body.stop must be a string or a list of 1 to 4 strings"),
    ({"messages": []}, "body.messages must be a non-empty list"),
    ({"messages": "hi"}, "body.messages must be a non-empty list"),
    ({"messages": None}, "body.messages must be a non-empty list"),
    ({"messages": ["hi"]}, "body.messages[0] must be an object"),
    ({"messages": [user("a"), {"role": "tool", "content": "r", "tool_call_id": "t"}]},
     "body.messages[1].tool_call_id is not supported for {family}"),
    ({"messages": [user("a"), {"role": "tool", "content": "r"}]},
     "body.messages[1].role 'tool' is not supported for {family}"),
    ({"messages": [{"role": "function", "content": "r"}]},
     "body.messages[0].role 'function' is not supported for {family}"),
    ({"messages": [{"role": "user", "content": "a", "name": "bob"}]},
     "body.messages[0].name is not supported for {family}"),
    ({"messages": [user("a"), {"role": "assistant", "content": None, "tool_calls": []}]},
     "body.messages[1].tool_calls is not supported for {family}"),
    ({"messages": [user("a"), {"role": "assistant", "content": "b", "refusal": None}]},
     "body.messages[1].refusal is not supported for {family}"),
    ({"messages": [{"role": "assistant", "content": "a"}, user("b")]},
     "body.messages must start with a user message (after any system messages)"),
    ({"messages": [{"role": "system", "content": "a"}]},
     "body.messages must start with a user message (after any system messages)"),
    ({"messages": [user(None)]}, "body.messages[0].content must be a string or a non-empty list of content parts"),
    ({"messages": [user([])]}, "body.messages[0].content must be a string or a non-empty list of content parts"),
    ({"messages": [user("")]}, "body.messages[0].content must be a non-empty string"),
    ({"messages": [user([{"type": "text", "text": ""}])]},
     "body.messages[0].content[0].text must be a non-empty string"),
    ({"messages": [user([{"type": "text", "text": "a", "cache_control": {}}])]},
     "body.messages[0].content[0].cache_control is not supported for {family}"),
    ({"messages": [user([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])]},
     "body.messages[0].content[0].type 'input_audio' is not supported for {family} in this message"),
    ({"messages": [user([{"type": "file", "file": {"file_id": "file-1"}}])]},
     "body.messages[0].content[0].type 'file' is not supported for {family} in this message"),
    ({"messages": [user(["just a string"])]},
     "body.messages[0].content[0].type None is not supported for {family} in this message"),
    ({"messages": [user("a"), {"role": "assistant", "content": [image(f"data:image/png;base64,{PNG}")]}]},
     "body.messages[1].content[0].type 'image_url' is not supported for {family} in this message"),
    ({"messages": [{"role": "system", "content": [image(f"data:image/png;base64,{PNG}")]}, user("a")]},
     "body.messages[0].content[0].type 'image_url' is not supported for {family} in this message"),
    ({"messages": [user([image("https://example.com/cat.png")])]},
     "body.messages[0].content[0].image_url.url: {family} cannot fetch https image URLs; send a base64 data: URL"),
    ({"messages": [user([image("http://example.com/cat.png")])]},
     "body.messages[0].content[0].image_url.url: {family} cannot fetch http image URLs; send a base64 data: URL"),
    ({"messages": [user([image("gs://bucket/cat.png")])]},
     "body.messages[0].content[0].image_url.url: {family} cannot fetch gs image URLs; send a base64 data: URL"),
    ({"messages": [user([image("data:image/png,rawbytes")])]},
     "body.messages[0].content[0].image_url.url must be a data:<image type>;base64,<data> URL"),
    ({"messages": [user([image("data:image/png;base64,abc")])]},
     "body.messages[0].content[0].image_url.url holds data that is not valid base64"),
    ({"messages": [user([image("data:image/png;base64,ab$=")])]},
     "body.messages[0].content[0].image_url.url holds data that is not valid base64"),
    ({"messages": [user([image(f"data:image/bmp;base64,{PNG}")])]},
     "body.messages[0].content[0].image_url.url: image/bmp images are not supported for {family} "
     "(only gif, jpeg, png, webp)"),
    ({"messages": [user([image(f"data:image/png;base64,{PNG}", detail="low")])]},
     "body.messages[0].content[0].image_url.detail 'low' is not supported for {family}"),
    ({"messages": [user([image(f"data:image/png;base64,{PNG}", size=1)])]},
     "body.messages[0].content[0].image_url.size is not supported for {family}"),
    ({"messages": [user([{"type": "image_url", "image_url": f"data:image/png;base64,{PNG}"}])]},
     "body.messages[0].content[0].image_url must be an object with a string 'url'"),
]
# fmt: on


@pytest.mark.parametrize("model", [CLAUDE, NOVA], ids=["claude", "nova"])
@pytest.mark.parametrize(("body", "message"), REFUSALS, ids=[str(n) for n in range(len(REFUSALS))])
def test_it_refuses_what_it_cannot_express_naming_the_line_and_field(
    model: str, body: dict[str, Any], message: str
) -> None:
    lines = [openai_line({"model": model, "messages": HI}, "ok"), openai_line({"model": model, "messages": HI, **body})]
    assert refusal(BedrockRewriter(), *lines) == f"Invalid batch file: line 2: {message.format(family=FAMILY[model])}."


def test_nova_micro_takes_text_but_refuses_images() -> None:
    assert rewrite_one(NOVA_MICRO, {"messages": HI}) == nova(N_HI)
    body = {
        "model": NOVA_MICRO,
        "messages": [user([{"type": "text", "text": "a"}, image(f"data:image/png;base64,{PNG}")])],
    }
    assert refusal(BedrockRewriter(), openai_line(body)) == (
        "Invalid batch file: line 1: body.messages[0].content[1].type 'image_url' is not supported for "
        "Amazon Nova Micro on Bedrock in this message."
    )


def test_it_takes_the_model_from_the_header_when_the_body_names_none() -> None:
    rewriter = BedrockRewriter(default_model=NOVA)
    records = rewritten(rewriter, openai_line({"messages": HI}, "a"), openai_line({"model": NOVA, "messages": HI}, "b"))
    assert [record["modelInput"] for record in records] == [nova(N_HI), nova(N_HI)]
    assert rewriter.model == NOVA


@pytest.mark.parametrize(
    ("default_model", "bodies", "message"),
    [
        (None, [{"messages": HI}], "line 1: body.model is missing and no X-Provider-Model header names a model"),
        (None, [{"model": 5, "messages": HI}], "line 1: body.model must be a non-empty string"),
        (None, [{"model": "", "messages": HI}], "line 1: body.model must be a non-empty string"),
        (None, [{"model": CLAUDE, "messages": HI}, {"model": NOVA, "messages": HI}],
         f"line 2: body.model {NOVA!r} differs from {CLAUDE!r} before it: a Bedrock batch job runs one model"),
        (NOVA, [{"model": CLAUDE, "messages": HI}, {"messages": HI}],
         f"line 2: X-Provider-Model {NOVA!r} differs from {CLAUDE!r} before it: a Bedrock batch job runs one model"),
    ],
)  # fmt: skip
def test_it_refuses_a_missing_model_and_a_second_model(
    default_model: str | None, bodies: list[dict[str, Any]], message: str
) -> None:
    lines = [openai_line(body, f"req-{n}") for n, body in enumerate(bodies)]
    assert refusal(BedrockRewriter(default_model=default_model), *lines) == f"Invalid batch file: {message}."


@pytest.mark.parametrize("url", ["/v1/embeddings", "/v1/responses", "/v1/completions"])
def test_it_refuses_endpoints_other_than_chat_completions(url: str) -> None:
    message = refusal(BedrockRewriter(), openai_line({"model": CLAUDE, "messages": HI}, url=url))
    assert (
        message
        == f"Invalid batch file: line 1: 'url' {url} cannot be rewritten for Bedrock, only /v1/chat/completions."
    )


def test_native_records_pass_unchanged_between_rewritten_lines() -> None:
    native = [
        b'{"recordId": "n-1",   "modelInput": {"anything": ["the model", "reads"]}}',
        b'{"modelInput":{"no":"recordId"}}',
    ]
    content = openai_line({"model": CLAUDE, "messages": HI}, "a") + native[0] + b"\r\n" + native[1] + b"\n"
    content += openai_line({"model": CLAUDE, "messages": HI}, "b")
    output = b"".join(rewrite_lines([content], BedrockRewriter(), max_line_bytes=1024)).split(b"\n")
    assert output[1:3] == native
    assert [record["recordId"] for record in rewritten(BedrockRewriter(), content)[::3]] == ["a", "b"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"recordId": "r", "modelInput": {}, "extra": 1}', "line 2: 'extra' is not a field of a Bedrock record "
                                                             "(recordId, modelInput)"),
        (b'{"recordId": "r"}', "line 2: 'modelInput' must be a JSON object"),
        (b'{"recordId": "r", "modelInput": "text"}', "line 2: 'modelInput' must be a JSON object"),
        (b'{"recordId": "", "modelInput": {}}', "line 2: 'recordId' must be a non-empty string"),
        (b'{"recordId": 5, "modelInput": {}}', "line 2: 'recordId' must be a non-empty string"),
        (b'{"recordId": "a", "modelInput": {}}', "line 2: 'request id' 'a' is used by an earlier line"),
        (b'{"custom_id": "b", "recordId": "r", "modelInput": {}}', "line 2: 'method' must be \"POST\""),
    ],
)  # fmt: skip
def test_it_checks_the_shape_of_native_records(line: bytes, message: str) -> None:
    content = openai_line({"model": CLAUDE, "messages": HI}, "a") + line
    assert refusal(BedrockRewriter(), content) == f"Invalid batch file: {message}."

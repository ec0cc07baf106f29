"""OpenAI chat-completions batch lines read into a neutral request: the half the rewriters share.

``ChatRewriter`` is the base of ``providers.batch_bedrock.BedrockRewriter`` and
``providers.batch_vertex.VertexRewriter``. For each OpenAI line it checks the ``url`` (only
``/v1/chat/completions`` can be rewritten), picks the model (``body.model``, else the
``default_model`` the gateway takes from ``X-Provider-Model``), insists on one model for the whole
file (a batch job runs one model), asks the subclass for that model's ``ChatFamily``, reads the body
under the family's ``ChatRules`` with ``read_chat`` and hands the ``ChatRequest`` to the family's
``build``. The subclass wraps the result in its record (``record``) and checks native lines
(``check_native``).

``read_chat`` drops nothing silently. A field the family cannot express is refused with the line
number and the field's path (``body.tools``, ``body.messages[2].content[0].type``). Ignored, because
they do not change the answer: ``user`` and ``safety_identifier`` (end-user ids for OpenAI's abuse
monitoring) and fields sent as ``null``. Accepted when they hold OpenAI's default: ``stream: false``,
``store: false``, ``logprobs: false`` and ``n: 1``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from providers.batch import CHAT_COMPLETIONS, line_error

IGNORED_FIELDS = frozenset({"user", "safety_identifier"})
DEFAULT_VALUES: dict[str, Any] = {"stream": False, "store": False, "logprobs": False, "n": 1}
IMAGE_EXTENSIONS = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}

_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+);base64,")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*+={0,2}")


@dataclass(frozen=True)
class Image:
    """An image part: base64 ``data`` from a ``data:`` URL, or a ``gs://`` ``uri``."""

    media_type: str
    data: str = ""
    uri: str = ""


@dataclass(frozen=True)
class Part:
    """One piece of a message: text or an image."""

    text: str | None = None
    image: Image | None = None


@dataclass
class Turn:
    """Consecutive messages of one role (``user`` or ``assistant``), merged as Anthropic merges them."""

    role: str
    parts: list[Part]


@dataclass
class ChatRequest:
    """What an OpenAI chat body asks for, checked against one family's ``ChatRules``.

    ``params`` holds the sampling fields by their OpenAI names (``max_completion_tokens`` is read
    as ``max_tokens``, ``stop`` is always a list), all of them keys of ``ChatRules.params``.
    """

    model: str
    system: list[str]
    turns: list[Turn]
    params: dict[str, Any]


@dataclass(frozen=True)
class ChatRules:
    """What one model family can express: ``params`` maps the OpenAI fields it takes to its own names."""

    name: str  # for messages: "Claude on Bedrock"
    params: Mapping[str, str]
    max_temperature: float
    image_types: frozenset[str]
    image_schemes: frozenset[str] = frozenset({"data"})


@dataclass(frozen=True)
class ChatFamily:
    """A model family: its rules and how it builds its native body from a ``ChatRequest``."""

    rules: ChatRules
    build: Callable[[int, ChatRequest], dict[str, Any]]


def renamed(params: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``params`` under their native ``names``, leaving out those ``names`` does not map."""
    return {names[key]: value for key, value in params.items() if key in names}


def read_chat(number: int, body: dict[str, Any], rules: ChatRules, model: str) -> ChatRequest:
    """Read line ``number``'s chat ``body`` under ``rules``; raises ``InvalidRequest`` naming the field."""
    system, turns = _read_messages(number, body.get("messages"), rules)
    params: dict[str, Any] = {}
    for name, value in body.items():
        if name in ("messages", "model") or name in IGNORED_FIELDS or value is None:
            continue
        key = "max_tokens" if name == "max_completion_tokens" else name
        if key in rules.params:
            value = _read_param(number, name, value, rules)
            if params.setdefault(key, value) != value:  # max_tokens alone can come twice
                raise line_error(number, "body.max_tokens and body.max_completion_tokens disagree")
        elif not _is_default(name, value):
            raise line_error(number, f"body.{name} is not supported for {rules.name}")
    return ChatRequest(model=model, system=system, turns=turns, params=params)


def _is_default(name: str, value: Any) -> bool:
    default = DEFAULT_VALUES.get(name)
    return default is not None and type(value) is type(default) and value == default


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_param(number: int, name: str, value: Any, rules: ChatRules) -> Any:
    """The checked value of sampling field ``name`` (``stop`` as a list)."""
    if name == "stop":
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not 1 <= len(stops) <= 4 or not all(isinstance(s, str) for s in stops):
            raise line_error(number, "body.stop must be a string or a list of 1 to 4 strings")
        return stops
    if name in ("max_tokens", "max_completion_tokens", "n"):
        valid, wanted = isinstance(value, int) and not isinstance(value, bool) and value >= 1, "a positive integer"
    elif name == "seed":
        valid, wanted = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif name == "temperature":
        valid = _is_number(value) and 0 <= value <= rules.max_temperature
        wanted = f"a number from 0 to {rules.max_temperature:g} for {rules.name}"
    elif name == "top_p":
        valid, wanted = _is_number(value) and 0 <= value <= 1, "a number from 0 to 1"
    elif name in ("presence_penalty", "frequency_penalty"):
        valid, wanted = _is_number(value) and -2 <= value <= 2, "a number from -2 to 2"
    else:
        return value  # response_format: its family reads it
    if not valid:
        raise line_error(number, f"body.{name} must be {wanted}")
    return value


def _read_messages(number: int, messages: Any, rules: ChatRules) -> tuple[list[str], list[Turn]]:
    """System texts (``system`` and ``developer`` messages, lifted out in order) and the turns."""
    if not isinstance(messages, list) or not messages:
        raise line_error(number, "body.messages must be a non-empty list")
    system: list[str] = []
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        where = f"body.messages[{index}]"
        if not isinstance(message, dict):
            raise line_error(number, f"{where} must be an object")
        _only(number, where, message, {"role", "content"}, rules)
        role = message.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise line_error(number, f"{where}.role {role!r} is not supported for {rules.name}")
        images = role == "user" and bool(rules.image_types)
        parts = _read_content(number, where, message.get("content"), rules, images=images)
        if role in ("system", "developer"):
            system.extend(part.text or "" for part in parts)
        elif turns and turns[-1].role == role:
            turns[-1].parts.extend(parts)
        else:
            turns.append(Turn(role, parts))
    if not turns or turns[0].role != "user":
        raise line_error(number, "body.messages must start with a user message (after any system messages)")
    return system, turns


def _read_content(number: int, where: str, content: Any, rules: ChatRules, *, images: bool) -> list[Part]:
    where = f"{where}.content"
    if isinstance(content, str):
        return [_text(number, where, content)]
    if not isinstance(content, list) or not content:
        raise line_error(number, f"{where} must be a string or a non-empty list of content parts")
    parts = []
    for index, item in enumerate(content):
        at = f"{where}[{index}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            _only(number, at, item, {"type", "text"}, rules)
            parts.append(_text(number, f"{at}.text", item.get("text")))
        elif kind == "image_url" and images:
            _only(number, at, item, {"type", "image_url"}, rules)
            parts.append(Part(image=_image(number, f"{at}.image_url", item.get("image_url"), rules)))
        else:
            raise line_error(number, f"{at}.type {kind!r} is not supported for {rules.name} in this message")
    return parts


def _text(number: int, where: str, text: Any) -> Part:
    if not isinstance(text, str) or not text:
        raise line_error(number, f"{where} must be a non-empty string")  # the native APIs refuse empty text
    return Part(text=text)


def _image(number: int, where: str, spec: Any, rules: ChatRules) -> Image:
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise line_error(number, f"{where} must be an object with a string 'url'")
    _only(number, where, spec, {"url", "detail"}, rules)
    if spec.get("detail", "auto") not in ("auto", "high"):
        # The native models read an image at their own full resolution: "low" cannot be honoured.
        raise line_error(number, f"{where}.detail {spec['detail']!r} is not supported for {rules.name}")
    url: str = spec["url"]
    if match := _DATA_URL.match(url):
        media_type = _image_type(number, where, match.group(1), rules)
        if not _BASE64.fullmatch(url, match.end()) or (len(url) - match.end()) % 4:
            raise line_error(number, f"{where}.url holds data that is not valid base64")
        return Image(media_type, data=url[match.end() :])
    scheme = url.partition(":")[0].lower()
    if scheme == "gs" and "gs" in rules.image_schemes:
        extension = url.rpartition("/")[2].rpartition(".")[2].lower()
        if extension not in IMAGE_EXTENSIONS:
            raise line_error(number, f"{where}.url must end in an image extension (.png, .jpeg, ...) telling its type")
        return Image(_image_type(number, where, IMAGE_EXTENSIONS[extension], rules), uri=url)
    if scheme == "data":
        raise line_error(number, f"{where}.url must be a data:<image type>;base64,<data> URL")
    accepted = "a base64 data: URL" + (" or a gs:// URI" if "gs" in rules.image_schemes else "")
    raise line_error(number, f"{where}.url: {rules.name} cannot fetch {scheme} image URLs; send {accepted}")


def _image_type(number: int, where: str, media_type: str, rules: ChatRules) -> str:
    if media_type not in rules.image_types:
        kinds = ", ".join(sorted(kind.removeprefix("image/") for kind in rules.image_types))
        raise line_error(number, f"{where}.url: {media_type} images are not supported for {rules.name} (only {kinds})")
    return media_type


def _only(number: int, where: str, obj: dict[str, Any], allowed: set[str], rules: ChatRules) -> None:
    for key in obj:
        if key not in allowed:
            raise line_error(number, f"{where}.{key} is not supported for {rules.name}")


class ChatRewriter(ABC):
    """The ``providers.batch.Rewriter`` for chat-completions lines; subclasses name their families.

    ``model`` is the one model the rewritten lines name, once the first has been rewritten (the
    upload path can record it for the batch job).
    """

    provider: ClassVar[str]
    native_keys: ClassVar[frozenset[str]]

    def __init__(self, *, default_model: str | None = None) -> None:
        self.default_model = default_model or None
        self.model: str | None = None

    def rewrite(self, number: int, line: dict[str, Any]) -> dict[str, Any]:
        """The native record for OpenAI line ``number``; raises ``InvalidRequest`` naming the field."""
        if line["url"] != CHAT_COMPLETIONS:
            raise line_error(
                number, f"'url' {line['url']} cannot be rewritten for {self.provider}, only {CHAT_COMPLETIONS}"
            )
        body = line["body"]
        model = self._model(number, body)
        family = self.family(number, model)
        return self.record(
            number, line["custom_id"], family.build(number, read_chat(number, body, family.rules, model))
        )

    def _model(self, number: int, body: dict[str, Any]) -> str:
        model, where = body.get("model"), "body.model"
        if model is None:
            model, where = self.default_model, "X-Provider-Model"
        if model is None:
            raise line_error(number, "body.model is missing and no X-Provider-Model header names a model")
        if not isinstance(model, str) or not model:
            raise line_error(number, f"{where} must be a non-empty string")
        if self.model is None:
            self.model = model
        elif model != self.model:
            raise line_error(
                number,
                f"{where} {model!r} differs from {self.model!r} before it: a {self.provider} batch job runs one model",
            )
        return model

    @abstractmethod
    def family(self, number: int, model: str) -> ChatFamily:
        """The family of ``model``; raises ``InvalidRequest`` for a model it cannot rewrite for."""

    @abstractmethod
    def record(self, number: int, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The provider's batch record carrying ``body`` and ``custom_id``."""

    @abstractmethod
    def check_native(self, number: int, line: dict[str, Any]) -> str | None:
        """See ``providers.batch.Rewriter.check_native``."""

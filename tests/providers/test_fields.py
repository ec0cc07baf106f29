"""Account settings are checked against each kind's declared fields before they are stored."""

from __future__ import annotations

import pytest

from config.errors import InvalidRequest
from providers import registry
from providers.fields import Field, clean_config, clean_value


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("openai", "organization", "org-1\r\nX-Injected: yes"),
        ("openai", "project", "proj\n1"),
        ("openai", "api_key", "sk-abc\rdef"),
        ("openai", "api_key", "sk-clé"),
        ("azure_openai", "api_version", "2024-10-21\nX-Injected: yes"),
        ("openai", "base_url", "http://exämple.com/v1"),
        ("openai", "base_url", "ftp://example.com"),
        ("openai", "base_url", "https://user:pw@example.com"),
        ("openai", "timeout", "soon"),
        ("openai", "timeout", "-1"),
    ],
)
def test_header_and_url_values_must_be_clean(kind: str, name: str, value: str) -> None:
    config = {"api_key": "sk-ok", "base_url": "https://x.openai.azure.com", name: value}
    with pytest.raises(InvalidRequest) as raised:
        registry.split_config(kind, config)
    assert raised.value.param == name


def test_a_trailing_newline_is_stripped_not_refused() -> None:
    # Values read from files (--set api_key=@FILE) end with one; that is not an injection.
    settings, secrets = registry.split_config("openai", {"api_key": "sk-ok\n", "organization": " org-1 "})
    assert (settings, secrets) == ({"organization": "org-1"}, {"api_key": "sk-ok"})


def test_unknown_and_missing_settings_are_named() -> None:
    with pytest.raises(InvalidRequest) as raised:
        registry.split_config("openai", {"api_key": "sk", "bucket": "b"})
    assert raised.value.param == "bucket"
    with pytest.raises(InvalidRequest) as raised:
        registry.split_config("azure_openai", {"api_key": "k"})
    assert raised.value.param == "base_url"


def test_non_header_text_may_be_unicode_but_never_multiline() -> None:
    field = Field("label", "Label")
    assert clean_value(field, "Büro") == "Büro"
    with pytest.raises(InvalidRequest):
        clean_value(field, "a\nb")


def test_json_fields_take_objects_with_newlines() -> None:
    field = Field("credentials_file", "Service account JSON", type="json", secret=True)
    assert clean_config([field], {"credentials_file": '{\n "type": "service_account"\n}'})
    with pytest.raises(InvalidRequest):
        clean_value(field, "[1, 2]")
    with pytest.raises(InvalidRequest):
        clean_value(field, "{not json")


def test_each_kind_derives_its_field_sets_from_its_declarations() -> None:
    cls = registry.provider_class("openai")
    assert cls.secret_fields == {"api_key"}
    assert cls.required_fields == {"api_key"}
    assert {"base_url", "organization", "project", "timeout"} == cls.settings_fields


@pytest.mark.parametrize("kind", ["anthropic", "groq"])
def test_the_translated_kinds_take_a_key_a_base_url_and_a_timeout(kind: str) -> None:
    cls = registry.provider_class(kind)
    assert (cls.secret_fields, cls.required_fields, cls.settings_fields) == (
        {"api_key"},
        {"api_key"},
        {"base_url", "timeout"},
    )
    settings, secrets = registry.split_config(kind, {"api_key": "k-1", "timeout": "30"})
    assert (settings, secrets) == ({"timeout": "30"}, {"api_key": "k-1"})
    for unknown in ("organization", "api_version"):
        with pytest.raises(InvalidRequest) as raised:
            registry.split_config(kind, {"api_key": "k", unknown: "x"})
        assert raised.value.param == unknown

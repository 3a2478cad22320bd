"""Pure parts of the CI/CD layer: parameter checks, secrets put back at their paths, URLs,
rate-limit hints (no I/O)."""

from __future__ import annotations

import httpx
import pytest

from opstui.cicd import params
from opstui.cicd.base import ProviderError
from opstui.cicd.clients import base_url, client_for, merge_secrets
from opstui.cicd.http import _exhausted, _retry_after

DEFS = [
    {"name": "ENV", "type": "choice", "choices": ["staging", "production"]},
    {"name": "DRY_RUN", "type": "boolean"},
    {"name": "COUNT", "type": "number"},
    {"name": "VERSION", "type": "string", "required": True},
]


def test_parameters_are_typed_and_checked_against_the_definitions():
    assert params.check(DEFS, {"ENV": "staging", "DRY_RUN": "yes", "COUNT": "3", "VERSION": "1.2"}) == {
        "ENV": "staging", "DRY_RUN": True, "COUNT": 3, "VERSION": "1.2"}  # fmt: skip
    for values, words in (
        ({"ENV": "moon", "VERSION": "1"}, "'moon' is not one of staging, production"),
        ({"DRY_RUN": "perhaps", "VERSION": "1"}, "'perhaps' is not true or false"),
        ({"COUNT": "many", "VERSION": "1"}, "'many' is not a number"),
        ({"COLOUR": "red", "VERSION": "1"}, "unknown parameter COLOUR"),
        ({}, "parameter VERSION is required"),
    ):
        with pytest.raises(ValueError, match=words):
            params.check(DEFS, values)
    assert params.check([], {"ANY": "thing"}) == {"ANY": "thing"}  # no definitions: anything goes
    assert params.parse_pairs(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        params.parse_pairs(["oops"])


def test_secrets_go_back_at_their_paths_in_memory_only():
    config = {
        "auth": {"user": "u"},
        "headers": [{"name": "n"}],
        "secret_keys": ["api_token", "auth.password"],
    }
    merged = merge_secrets(config, {"api_token": "T", "auth.password": "P", "headers.0.token": "H"})
    assert merged == {"auth": {"user": "u", "password": "P"}, "headers": [{"name": "n", "token": "H"}],
                      "api_token": "T"}  # fmt: skip
    assert "password" not in config["auth"]  # the row's config is untouched


def test_urls_get_the_rows_port_and_configs_are_checked_per_type():
    assert base_url("https://jenkins.example/", 8443) == "https://jenkins.example:8443"
    assert base_url("http://127.0.0.1:9000/ci", 8443) == "http://127.0.0.1:9000/ci"
    row = {"type": "jenkins", "name": "j", "url": "http://127.0.0.1:1", "config": {"username": "u"}}
    with pytest.raises(ProviderError, match="needs a user and an API token"):
        client_for(row, {})
    with pytest.raises(ProviderError, match="needs owner, repo and a token"):
        client_for({**row, "type": "github"}, {"token": "t"})
    with pytest.raises(ProviderError, match="opstui drives jenkins, github and gitlab"):
        client_for({**row, "type": "circleci"}, {"token": "t"})
    assert (
        client_for(
            {**row, "type": "github_actions", "config": {"repository": "o/r"}}, {"token": "t"}
        ).kind
        == "github"
    )


def test_rate_limit_hints():
    now = 1_800_000_000.0
    assert _retry_after(httpx.Headers({"Retry-After": "7"}), now) == 7
    assert _retry_after(httpx.Headers({"X-RateLimit-Reset": str(int(now) + 30)}), now) == 30
    assert _retry_after(httpx.Headers({"RateLimit-Reset": "12"}), now) == 12
    assert _retry_after(httpx.Headers({}), now) is None
    assert _exhausted(httpx.Headers({"X-RateLimit-Remaining": "0"}))
    assert not _exhausted(httpx.Headers({"RateLimit-Remaining": "5"}))


def test_the_provider_form_checks_each_types_config():
    from pydantic import ValidationError

    from opstui.models import CicdProviderForm

    def errors(**row) -> str:
        try:
            CicdProviderForm.model_validate({"name": "p", "url": "https://ci.example", **row})
        except ValidationError as exc:
            return str(exc)
        return ""

    assert errors(type="jenkins", config={"username": "u", "api_token": "t"}) == ""
    assert 'Jenkins needs "api_token"' in errors(type="jenkins", config={"username": "u"})
    assert 'Jenkins needs "username"' in errors(type="jenkins", config={"api_token": "t"})
    assert errors(type="jenkins", config={"username": "u", "secret_keys": ["api_token"]}) == ""  # edit
    assert 'GitHub needs "owner" and "repo"' in errors(type="github", config={"token": "t"})
    assert errors(type="github_actions", config={"repository": "o/r", "auth": {"token": "t"}}) == ""
    assert 'GitLab needs "project"' in errors(type="gitlab", config={"token": "t"})
    assert "must not carry credentials" in errors(
        type="gitlab", url="https://u:t@gitlab.example", config={"project": "g/a", "token": "t"}
    )

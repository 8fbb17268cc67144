"""Provider table and endpoint rules."""

import pytest

from archc.compiler.provider_table import (AZURE_API_VERSION, INTERFACES, PROVIDERS, BaseUrlError, endpoint_url, responses_url, spec_for,
                                           split_literal)


@pytest.mark.parametrize("prefix,url,wire,auth,key", [
    ("openai", "https://api.openai.com/v1/chat/completions", "openai_chat", "bearer", "OPENAI_API_KEY"),
    ("anthropic", "https://api.anthropic.com/v1/messages", "anthropic_messages", "x-api-key", "ANTHROPIC_API_KEY"),
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", "openai_chat", "bearer", "GEMINI_API_KEY"),
    ("mistral", "https://api.mistral.ai/v1/chat/completions", "openai_chat", "bearer", "MISTRAL_API_KEY"),
    ("deepseek", "https://api.deepseek.com/v1/chat/completions", "openai_chat", "bearer", "DEEPSEEK_API_KEY"),
    ("groq", "https://api.groq.com/openai/v1/chat/completions", "openai_chat", "bearer", "GROQ_API_KEY"),
    ("xai", "https://api.x.ai/v1/chat/completions", "openai_chat", "bearer", "XAI_API_KEY"),
    ("together_ai", "https://api.together.xyz/v1/chat/completions", "openai_chat", "bearer", "TOGETHER_API_KEY"),
    ("openrouter", "https://openrouter.ai/api/v1/chat/completions", "openai_chat", "bearer", "OPENROUTER_API_KEY"),
    ("echo", "echo://local", "openai_chat", "none", None),
])
def test_default_endpoints(prefix: str, url: str, wire: str, auth: str, key: str | None) -> None:
    spec = PROVIDERS[prefix]
    assert (endpoint_url(spec, "m", None, {}).url, spec.wire, spec.auth, spec.key_env) == (url, wire, auth, key)
    assert spec.served and not spec.needs_base_url


@pytest.mark.parametrize("base,interface,expected", [
    ("http://127.0.0.1:8080", "openai", "http://127.0.0.1:8080/v1/chat/completions"),
    ("http://127.0.0.1:8080/", "openai", "http://127.0.0.1:8080/v1/chat/completions"),
    ("http://127.0.0.1:8080", "anthropic", "http://127.0.0.1:8080/v1/messages"),
    ("http://127.0.0.1:8080/v1", "openai", "http://127.0.0.1:8080/v1/chat/completions"),
    ("http://127.0.0.1:8080/api/v2/", "openai", "http://127.0.0.1:8080/api/v2/chat/completions"),
    ("http://127.0.0.1:8080/v1", "anthropic", "http://127.0.0.1:8080/v1/messages"),
])
def test_base_url_rule(base: str, interface: str, expected: str) -> None:
    assert endpoint_url(spec_for("custom", interface), "m", base, {}).url == expected


def test_known_prefix_with_local_base_url() -> None:
    assert endpoint_url(PROVIDERS["openai"], "gpt-4o", "http://127.0.0.1:9", {}).url == "http://127.0.0.1:9/v1/chat/completions"
    assert endpoint_url(PROVIDERS["anthropic"], "c", "http://127.0.0.1:9", {}).url == "http://127.0.0.1:9/v1/messages"
    assert endpoint_url(PROVIDERS["ollama"], "llama3.1", "http://localhost:11434", {}).url == "http://localhost:11434/v1/chat/completions"


def test_azure_layout_and_api_version() -> None:
    spec = PROVIDERS["azure_openai"]
    assert spec.needs_base_url and spec.auth == "api-key"
    assert endpoint_url(spec, "gpt-4o", "https://r.openai.azure.com/", {}).url == \
        f"https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version={AZURE_API_VERSION}"
    assert endpoint_url(spec, "d", "https://r.openai.azure.com", {"api_version": "2025-01-01-preview"}).url.endswith(
        "?api-version=2025-01-01-preview")


def test_interface_overrides_wire_of_known_prefix() -> None:
    spec = spec_for("openai", "anthropic")
    assert spec.wire == "anthropic_messages" and spec.auth == "x-api-key"
    assert spec_for("nope", None) is None


@pytest.mark.parametrize("bad", ["localhost:11434", "ftp://x", "http://", "http://u:p@host", "http://h:99999"])
def test_bad_base_urls(bad: str) -> None:
    with pytest.raises(BaseUrlError):
        endpoint_url(PROVIDERS["ollama"], "m", bad, {})


def test_split_at_first_slash() -> None:
    assert split_literal("together_ai/openai/gpt-oss-20b") == ("together_ai", "openai/gpt-oss-20b")
    assert split_literal("gpt-4o") is None and split_literal("/x") is None and split_literal("x/") is None


def test_unserved_known_providers() -> None:
    for prefix in ("amazon_bedrock", "qwen", "moonshotai", "zhipu", "arch"):
        assert not PROVIDERS[prefix].served
    assert PROVIDERS["amazon_bedrock"].needs_base_url and PROVIDERS["qwen"].needs_base_url


# Each provider's documented base_url (README's table) -> the URL requests go to, and whether it is used as is.
REAL_BASE_URLS = [
    ("openai/gpt-4o", None, "https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions", False),
    ("azure_openai/dep", None, "https://r.openai.azure.com",
     f"https://r.openai.azure.com/openai/deployments/dep/chat/completions?api-version={AZURE_API_VERSION}", False),
    ("azure_openai/dep", None, "https://r.openai.azure.com/?api-version=2025-01-01-preview",
     "https://r.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2025-01-01-preview", False),
    ("azure_openai/dep", None,
     "https://r.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-01-01-preview",
     "https://r.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-01-01-preview", True),
    ("azure_openai/dep", None, "https://r.openai.azure.com/openai/deployments/d/chat/completions",
     f"https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version={AZURE_API_VERSION}", True),
    ("azure_openai/gpt-4o", None, "https://r.openai.azure.com/openai/v1/",
     "https://r.openai.azure.com/openai/v1/chat/completions", False),
    ("openrouter/x", None, "https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions", False),
    ("or/claude", "anthropic", "https://openrouter.ai/api", "https://openrouter.ai/api/v1/messages", False),
    ("deepseek/deepseek-chat", None, "https://api.deepseek.com/v1", "https://api.deepseek.com/v1/chat/completions", False),
    ("ds/deepseek-chat", "anthropic", "https://api.deepseek.com/anthropic",
     "https://api.deepseek.com/anthropic/v1/messages", False),
    ("kimi/kimi-k2", "anthropic", "https://api.moonshot.ai/anthropic", "https://api.moonshot.ai/anthropic/v1/messages", False),
    ("zai/glm-4.6", "anthropic", "https://api.z.ai/api/anthropic", "https://api.z.ai/api/anthropic/v1/messages", False),
    ("minimax/MiniMax-M2", "anthropic", "https://api.minimax.io/anthropic", "https://api.minimax.io/anthropic/v1/messages", False),
    ("groq/llama", None, "https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1/chat/completions", False),
    ("together_ai/m", None, "https://api.together.xyz/v1", "https://api.together.xyz/v1/chat/completions", False),
    ("cf/gpt-4o", "openai", "https://gateway.ai.cloudflare.com/v1/acct/gw/openai",
     "https://gateway.ai.cloudflare.com/v1/acct/gw/openai/chat/completions", False),
    ("cfa/claude", "anthropic", "https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic",
     "https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic/v1/messages", False),
    ("vllm/qwen", "openai", "http://gpu:8000/v1", "http://gpu:8000/v1/chat/completions", False),
    ("vllm/qwen", "openai", "http://gpu:8000", "http://gpu:8000/v1/chat/completions", False),
    ("ollama/llama3.1", None, "http://localhost:11434", "http://localhost:11434/v1/chat/completions", False),
    ("llamacpp/m", "openai", "http://localhost:8080", "http://localhost:8080/v1/chat/completions", False),
    ("self/m", "openai", "http://h:1/v1/chat/completions", "http://h:1/v1/chat/completions", True),
    ("self/m", "anthropic", "http://h:1/api/v1/messages?beta=true", "http://h:1/api/v1/messages?beta=true", True),
    ("self/m", "openai", "http://h:1/v1?tenant=a", "http://h:1/v1/chat/completions?tenant=a", False),
]


@pytest.mark.parametrize("literal,interface,base,url,as_is", REAL_BASE_URLS)
def test_real_base_urls(literal: str, interface: str | None, base: str, url: str, as_is: bool) -> None:
    prefix, model = split_literal(literal)
    got = endpoint_url(spec_for(prefix, interface), model, base, {})
    assert (got.url, got.as_is) == (url, as_is)
    assert got.rule


def test_azure_api_version_twice_is_an_error() -> None:
    with pytest.raises(BaseUrlError, match="api-version is given twice"):
        endpoint_url(PROVIDERS["azure_openai"], "d", "https://r.openai.azure.com?api-version=2024-06-01",
                     {"api_version": "2025-01-01-preview"})
    same = endpoint_url(PROVIDERS["azure_openai"], "d", "https://r.openai.azure.com?api-version=2024-06-01",
                        {"api_version": "2024-06-01"})
    assert same.url.endswith("?api-version=2024-06-01")


# (literal, provider_interface, base_url) -> where Responses clients are passed through (None: translated to chat).
RESPONSES_URLS = [
    ("openai/gpt-4o", None, None, "https://api.openai.com/v1/responses"),
    ("openai/gpt-4o", None, "http://127.0.0.1:8000/v1", None),  # a custom server behind openai/: chat only, as before
    ("openai/gpt-4o", "openai_responses", "http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/responses"),
    ("vllm/qwen", "openai_responses", "http://gpu:8000", "http://gpu:8000/v1/responses"),
    ("self/m", "openai_responses", "http://h:1/v1/chat/completions?tenant=a", "http://h:1/v1/responses?tenant=a"),
    ("vllm/qwen", "openai", "http://gpu:8000/v1", None),
    ("anthropic/claude-sonnet-4", None, None, None),
    ("deepseek/deepseek-chat", None, None, None),
    ("azure_openai/dep", None, "https://r.openai.azure.com", None),
]


@pytest.mark.parametrize("literal,interface,base,expected", RESPONSES_URLS)
def test_responses_urls(literal: str, interface: str | None, base: str | None, expected: str | None) -> None:
    prefix, model = split_literal(literal)
    spec = spec_for(prefix, interface)
    chat = endpoint_url(spec, model, base, {})
    assert responses_url(spec, chat, base_url=base, interface=interface) == expected
    assert spec.wire == ("anthropic_messages" if prefix == "anthropic" else "openai_chat")


def test_plano_providers_have_their_default_endpoints_and_keys() -> None:
    for prefix, url, key in [("digitalocean", "https://inference.do-ai.run/v1/chat/completions", "DO_API_KEY"),
                             ("vercel", "https://ai-gateway.vercel.sh/v1/chat/completions", "AI_GATEWAY_API_KEY"),
                             ("edenai", "https://api.edenai.run/v3/chat/completions", "EDENAI_API_KEY"),
                             ("xiaomi", "https://api.xiaomimimo.com/v1/chat/completions", "MIMO_API_KEY")]:
        spec = PROVIDERS[prefix]
        assert spec.served and spec.key_env == key
        assert endpoint_url(spec, "m", None, {}).url == url
    assert not PROVIDERS["chatgpt"].served
    for interface in ("openrouter", "digitalocean", "vercel", "edenai", "xiaomi", "moonshotai"):
        assert INTERFACES[interface].wire == "openai_chat" and INTERFACES[interface].served

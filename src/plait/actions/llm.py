"""The ``llm`` connection type: a hosted or self-hosted large language model.

One type covers two wire APIs. ``api: openai`` (the default) speaks the OpenAI chat
completions, embeddings and models API, which OpenAI, Azure OpenAI (``azure: true``),
vLLM, Ollama, LM Studio and most gateways serve; ``api: anthropic`` speaks Anthropic's
messages API. The client every AI action uses is :mod:`plait.ai.llm`; this module holds
only the settings and the connection test, so listing connection types imports no
HTTP client.

Prices (USD per 1,000 tokens) are optional; with them every call's usage carries its
cost, which steps output and ``/metrics`` adds up.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from plait.actions.connections import ConnectionConfig, ConnectionType

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com/v1"
#: the Azure OpenAI REST version used when ``api_version`` is not given (GA, 2024-10-21)
AZURE_API_VERSION = "2024-10-21"
#: the ``anthropic-version`` header sent when ``api_version`` is not given
ANTHROPIC_API_VERSION = "2023-06-01"
#: the completion limit sent to the anthropic API when neither the step nor the
#: connection sets one (that API requires it)
ANTHROPIC_MAX_TOKENS = 1024


class LlmConfig(ConnectionConfig):
    api: Literal["openai", "anthropic"] = Field(
        "openai",
        description="The wire API: openai (OpenAI, Azure OpenAI, vLLM, Ollama, LM Studio) "
        "or anthropic.",
    )
    base_url: str | None = Field(
        None,
        description="The API root, e.g. http://localhost:11434/v1 (Ollama) or "
        "https://NAME.openai.azure.com (Azure); default OpenAI's or Anthropic's.",
    )
    api_key: SecretStr | None = Field(
        None, description="The API key (none for a local server that needs none)."
    )
    model: str | None = Field(
        None, description="The default chat model (the deployment name on Azure)."
    )
    embedding_model: str | None = Field(
        None, description="The default embeddings model (deployment on Azure)."
    )
    azure: bool = Field(
        False, description="Azure OpenAI: deployment URLs, the api-key header, api-version."
    )
    api_version: str | None = Field(
        None,
        description=f"Azure's api-version (default {AZURE_API_VERSION}) or the "
        f"anthropic-version header (default {ANTHROPIC_API_VERSION}).",
    )
    organization: str | None = Field(None, description="Sent as the OpenAI-Organization header.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers sent with every request."
    )
    timeout: float = Field(60.0, gt=0, le=3600, description="Seconds allowed for one request.")
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries within one step attempt on 429, 5xx and connection errors "
        "(then the step's own retry policy takes over).",
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        description=f"Default completion limit (the anthropic API needs one: "
        f"{ANTHROPIC_MAX_TOKENS} when unset).",
    )
    verify: bool = Field(True, description="Verify the server's TLS certificate.")
    price_per_1k_prompt_tokens: float | None = Field(
        None, ge=0, description="USD per 1,000 prompt tokens, for cost accounting."
    )
    price_per_1k_completion_tokens: float | None = Field(
        None, ge=0, description="USD per 1,000 completion tokens, for cost accounting."
    )

    @model_validator(mode="after")
    def _consistent(self) -> LlmConfig:
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("base_url must be an http:// or https:// URL")
            if "@" in parts.netloc:
                raise ValueError(
                    "base_url must not hold a user or password: give the key as api_key "
                    "(a credential), a gateway's own as headers"
                )
        if self.azure and self.api != "openai":
            raise ValueError("azure: true goes with api: openai")
        if self.azure and not self.base_url:
            raise ValueError("azure: true needs base_url (https://NAME.openai.azure.com)")
        return self

    @property
    def root(self) -> str:
        """The API root without a trailing slash."""
        default = ANTHROPIC_URL if self.api == "anthropic" else OPENAI_URL
        return (self.base_url or default).rstrip("/")

    @property
    def priced(self) -> bool:
        return (
            self.price_per_1k_prompt_tokens is not None
            or self.price_per_1k_completion_tokens is not None
        )


class LlmConnection(ConnectionType):
    name = "llm"
    description = (
        "A large language model: OpenAI-compatible (OpenAI, Azure OpenAI, vLLM, Ollama, "
        "LM Studio) or Anthropic; chat, embeddings, token and cost accounting."
    )
    Config = LlmConfig

    async def test(self, config: LlmConfig) -> str:
        """List the models (a free call); where the server has no model list, a one-token
        chat. Says what answered and whether the default model is there."""
        from plait.ai.llm import probe

        return await probe(config)

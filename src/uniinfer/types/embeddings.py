"""Embeddings and model-list types (OpenAI ``CreateEmbeddingRequest`` / ``Response``, ``Model``)."""

from __future__ import annotations

import array
import base64
import sys
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from uniinfer.types.chat import FIRST, MAX_MODEL_NAME

__all__ = ["Embedding", "EmbeddingRequest", "EmbeddingResponse", "EmbeddingUsage", "ModelCard", "ModelList"]


#: A token id: a vocabulary index (beyond 32 bits no tokenizer has one; beyond 64 none can be sent).
_TokenId = Annotated[int, Field(ge=0, lt=2**32)]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings`` body (strict types, like the chat request: ``[true]`` is no token id)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    input: (
        str
        | Annotated[list[str], FIRST]
        | Annotated[list[_TokenId], FIRST]
        | Annotated[list[list[_TokenId]], FIRST]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: str | list[str] | list[int] | list[list[int]]) -> object:
        if isinstance(value, list):
            if not value:
                raise ValueError("'input' must not be an empty array")
            if len(value) > 2048:
                raise ValueError("'input' may hold at most 2048 items")
            if any(isinstance(v, str | list) and not v for v in value):
                raise ValueError("'input' must not contain empty strings or empty token arrays")
        elif not value:
            raise ValueError("'input' must not be an empty string")
        return value

    @property
    def count(self) -> int:
        """How many embeddings the answer holds: one per string or token array."""
        if isinstance(self.input, str) or not isinstance(self.input[0], str | list):
            return 1  # a string, or one array of token ids
        return len(self.input)

    @property
    def texts(self) -> list[str] | None:
        """The input as a list of strings, or None when it is token ids."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(v, str) for v in self.input):
            return [v for v in self.input if isinstance(v, str)]
        return None


class Embedding(BaseModel):
    model_config = ConfigDict(extra="ignore")
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)

    def as_base64(self) -> EmbeddingResponse:
        """The float vectors as base64 little-endian float32, as OpenAI's ``encoding_format:
        base64`` gives them (vectors already encoded upstream stay as they are)."""
        data = []
        for item in self.data:
            if isinstance(item.embedding, list):
                arr = array.array("f", item.embedding)
                if sys.byteorder == "big":
                    arr.byteswap()
                item = item.model_copy(update={"embedding": base64.b64encode(arr.tobytes()).decode()})
            data.append(item)
        return self.model_copy(update={"data": data})


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``; ``owned_by`` is the provider."""

    model_config = ConfigDict(extra="ignore")
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    #: uniinfer extension: whether the model's providers have credentials.
    available: bool = True


class ModelList(BaseModel):
    model_config = ConfigDict(extra="ignore")
    object: Literal["list"] = "list"
    data: list[ModelCard]

"""Where answers come from: the document sources, table schemas, a chroma server, the retrieval settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from kit.settings.fields import EMBEDDED, EMBEDDING_MODELS, SourcePath, Strict


class TableSchema(Strict):
    """What a CSV document must hold."""

    id_column: str = Field(min_length=1, description="Column with each row's unique id (e.g. 'sku').")
    required_columns: list[str] = Field(default_factory=list, description="Columns that must be present.")
    numeric_columns: list[str] = Field(
        default_factory=list, description="Columns whose values must be numbers (e.g. 'price')."
    )
    filter_columns: list[str] = Field(
        default_factory=list, description="Columns stored as metadata for search filters (e.g. 'category')."
    )


class Source(Strict):
    """A file or folder of documents retrieval serves."""

    path: SourcePath = Field(description="File or folder relative to the domain; folders are read recursively.")
    table: TableSchema | None = Field(default=None, description="Schema for a CSV file; rows become chunks.")


class ServerSettings(Strict):
    """A chromadb server, for users who outgrow one machine."""

    host: str = Field(description="Host name of the chromadb server.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the chromadb server.")
    ssl: bool = Field(default=False, description="Use HTTPS.")


def embedding_name(value: str) -> str:
    """The embedding model a retrieval.embedding_model value means: 'embedded' resolved to its name."""
    return EMBEDDING_MODELS[0] if value == EMBEDDED else value


def known_embedding_model(value: str) -> str:
    if value.startswith(f"{EMBEDDED}:") and value not in EMBEDDING_MODELS:
        known = ", ".join(f"'{n}'" for n in EMBEDDING_MODELS)
        raise ValueError(f"unknown embedded embedding model '{value}'; use 'embedded', {known}")
    return value


class Retrieval(Strict):
    """How documents are chunked, embedded, stored and searched."""

    sources: list[Source] = Field(min_length=1, description="Documents retrieval serves.")
    chunk_size: int = Field(default=900, ge=100, le=8000, description="Target chunk length in characters.")
    chunk_overlap: int = Field(default=150, ge=0, le=2000, description="Characters shared by neighbouring chunks.")
    max_file_mb: int = Field(default=20, ge=1, le=1024, description="Larger files are skipped with a warning.")
    embedding_model: Annotated[str, AfterValidator(known_embedding_model)] = Field(
        default=EMBEDDED,
        description="'embedded' (all-MiniLM-L6-v2 from its PyPI package), 'embedded:<name>' with a name from "
        f"{', '.join(n.partition(':')[2] for n in EMBEDDING_MODELS)}, a local folder, or a hub id. Changing it "
        "re-indexes the documents; the guardrails embed with it too, so recalibrate their thresholds.",
    )
    thresholds_calibrated_on: Annotated[str, AfterValidator(known_embedding_model)] = Field(
        default=EMBEDDED,
        description="The embedding model the rules' and hand-off triggers' `threshold`s were calibrated on (`kit eval "
        "--safety --calibrate` names it). A cosine means something else under another model: while it differs from "
        "embedding_model and a rule or trigger has examples, kit serve, chat and ask refuse to start.",
    )
    k: int = Field(default=4, ge=1, le=50, description="Chunks given to the model per question.")
    bm25_weight: float = Field(default=1.0, ge=0, description="Weight of keyword search in the fusion.")
    vector_weight: float = Field(default=1.0, ge=0, description="Weight of vector search in the fusion.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    reranker: str | None = Field(default=None, description="Optional cross-encoder (local folder or hub id).")
    server: ServerSettings | None = Field(default=None, description="Use a chromadb server instead of a local store.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Retrieval:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self

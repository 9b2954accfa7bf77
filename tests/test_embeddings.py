"""Embedders: the OpenAI client against the loopback server, and the bundled local model."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from memagent.config import Settings, get_settings
from memagent.errors import ProviderError
from memagent.providers.embeddings import OpenAIEmbedder, make_embedder
from memagent.providers.local import LocalEmbedder
from tests.conftest import fake_embedder, needs_local_model
from tests.fake_openai import Failure, FakeOpenAI, fake_embedding


def test_openai_embedder_batches_and_decodes(fake: FakeOpenAI) -> None:
    embedder = fake_embedder(fake, batch_size=4)
    texts = [f"text number {i}" for i in range(10)]
    vectors = embedder.embed(texts)

    assert vectors.shape == (10, 384)
    np.testing.assert_allclose(vectors[3], fake_embedding("text number 3", 384), rtol=1e-6)
    requests = fake.embedding_requests()
    assert [len(r["body"]["input"]) for r in requests] == [4, 4, 2]
    assert requests[0]["body"]["model"] == "fake-embed-384"
    assert requests[0]["auth"] == f"Bearer {fake.api_key}"


def test_openai_embedder_retries_then_reports_one_line(fake: FakeOpenAI) -> None:
    fake.failures = [Failure(500, retry_after=0), Failure(500, retry_after=0), Failure(500, retry_after=0)]
    embedder = fake_embedder(fake, max_retries=2)
    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        embedder.embed(["hello"])
    assert len(fake.embedding_requests()) == 3
    assert "\n" not in str(caught.value)


def test_openai_embedder_recovers_after_a_transient_429(fake: FakeOpenAI) -> None:
    fake.failures = [Failure(429, retry_after=0)]
    vectors = fake_embedder(fake, max_retries=2).embed(["hello"])
    assert vectors.shape == (1, 384)
    assert len(fake.embedding_requests()) == 2


def test_bad_key_error_does_not_show_the_key(fake: FakeOpenAI) -> None:
    fake.failures = [Failure(401, body={"error": {"message": f"Incorrect API key provided: {fake.api_key}"}})]
    with pytest.raises(ProviderError, match="rejected the API key") as caught:
        fake_embedder(fake).embed(["hello"])
    assert fake.api_key not in str(caught.value)


def test_wrong_dimension_from_provider_is_reported(fake: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder(
        model="fake-embed-768", dim=384, base_url=fake.base_url, api_key="k", max_retries=0
    )
    with pytest.raises(ProviderError, match="MEMAGENT_EMBEDDING_DIM"):
        embedder.embed(["hello"])


def test_unreachable_provider(fake: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder(
        model="m", dim=384, base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout=2
    )
    with pytest.raises(ProviderError, match="cannot reach"):
        embedder.embed(["hello"])


def test_settings_pick_the_embedder() -> None:
    assert isinstance(make_embedder(Settings()), LocalEmbedder)
    remote = make_embedder(get_settings(openai_api_key="sk-x"))
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.model, remote.dim) == ("text-embedding-3-small", 1536)


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


@needs_local_model
def test_local_embedder_is_normalised_384(local: LocalEmbedder) -> None:
    vectors = local.embed(["My name is Priya", "Rust compilers for embedded targets"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@needs_local_model
def test_local_embedder_ranks_by_meaning(local: LocalEmbedder) -> None:
    memories = [
        "My name is Priya and I'm building a Rust compiler for embedded targets",
        "I went hiking in the Alps last summer",
        "My favourite food is ramen",
    ]
    vectors = local.embed(memories)
    query = local.embed(["what project am I working on?"])[0]
    assert int(np.argmax(vectors @ query)) == 0


@needs_local_model
def test_local_embedder_vectors_are_sentence_transformers_own(local: LocalEmbedder) -> None:
    """The numpy forward pass gives all-MiniLM-L6-v2's vectors as sentence-transformers computes them
    (reference vectors committed once by benchmarks/minilm_reference.py), so databases built before stay
    valid without a reembed — long texts past the model's input, other scripts and emoji included."""
    reference = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())
    expected = np.stack(
        [np.frombuffer(base64.b64decode(v), dtype="<f4") for v in reference["vectors_base64_f32le"]]
    )
    # One call, so texts of different lengths share batches (padding must not change a vector)...
    together = local.embed(reference["sentences"])
    # ...and one at a time.
    alone = np.stack([local.embed([sentence])[0] for sentence in reference["sentences"]])
    for got in (together, alone):
        cosine = np.sum(got * expected, axis=1)
        assert cosine.min() >= 0.9999, (float(cosine.min()), reference["sentences"][int(cosine.argmin())])


@needs_local_model
def test_local_embedder_says_how_far_a_long_text_is_read(local: LocalEmbedder) -> None:
    long_text = " ".join(f"word{i}" for i in range(2000))
    read = local.covered(long_text)
    assert 0 < read < len(long_text) and long_text[:read].endswith(long_text[:read].split()[-1])
    assert local.covered("a short text") == len("a short text")


def test_a_missing_local_model_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from memagent.errors import ConfigError

    monkeypatch.setenv("MEMAGENT_LOCAL_MODEL_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"holds no model\.safetensors"):
        make_embedder(get_settings()).embed(["x"])

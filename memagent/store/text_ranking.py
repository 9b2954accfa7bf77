"""BM25 text ranking in the database over statistics kept at write time, MaxScore pruning (revision 0011).

Statistics: memagent.store.text_stats.

Ranking. BM25 (k1 1.2, b 0.75) with IDF ln(1 + (N - df + 0.5) / (df + 0.5)) over the namespace's statistics
(a session- or date-scoped recall ranks within its scope with the namespace's statistics, as a search engine
ranks a filtered query with its index's). A query is the OR of its lexemes, and most of a large namespace
matches its common words; scoring every match was what made text recall linear. Instead (MaxScore-style
bounds): a term adds at most idf * BM25(its largest frequency, its shortest memory) to a memory's score.
Pass 1 finds a lower bound theta of the final depth-th best score by scoring the memories that hold the
three rarest terms, then two of them, then any of the rarest terms holding depth memories, until depth are
scored. A memory can reach theta only if the bounds of the query terms it holds sum to theta, so pass 2
scores the memories that hold one of the minimal such sets of terms: an OR of ANDs, which the GIN index
intersects (with more than 64 sets, or 1,000 looked at, the memories holding one of the fewest rarest
terms whose remaining bounds sum below theta). Nothing that could reach the top `depth` is skipped, so
the result is the exact BM25 top `depth` (a test compares it with scoring every memory). No memory is
scored twice; a candidate's term frequencies come from its tsvector filtered to the query's lexemes
(setweight + ts_filter).

The ranking function runs as its owner (SECURITY DEFINER, search_path pinned to its schema): under row-level
security PostgreSQL may not use the GIN index for `@@`, an operator not marked leakproof, so as its caller it
would read the whole namespace. Only memagent_app and the owner may call it (EXECUTE revoked from PUBLIC),
and it checks that the transaction may read the namespace it is asked for (memagent.namespace, as the
policy does; with none set, only a member of the owner's role may ask); the rows themselves are then read
under the caller's policy. The statistics triggers also run as the owner: memagent_app holds no privilege
on the statistics, so no query of memagent's can read or bend them.
The revisions create it through memagent.store.text_schema; change the SQL only in a new revision.
"""

from __future__ import annotations

from memagent.validation import ALL_NAMESPACES

K1 = 1.2
B = 0.75

# One memory's BM25 term weight, for frequency `tf` and length `dl` (SQL; avgdl names the mean length).
_WEIGHT = f"{{tf}} * {K1 + 1} / ({{tf}} + {K1} * (1 - {B} + {B} * {{dl}} / {{avgdl}}))"


# Up to this many memories, a namespace is read whole rather than through the full-text index.
SMALL = 2000
# Pass 2 enumerates sets of query terms (the sets it extends included) up to this many; more (a long query
# of similar words), and it takes the rarest terms instead.
EXPLORE = 1000

# The best `depth` memories of a candidate query: $1 namespace, $2 every query lexeme, $3 their IDFs,
# $4 avgdl, $5 the tsquery of the candidates, $6 session, $7 before, $8 depth, $9 the tsquery of memories
# scored before.
_SCORE = f"""
SELECT array_agg(r.id ORDER BY r.score DESC, r.id), array_agg(r.score ORDER BY r.score DESC, r.id)
FROM (
    SELECT m.id, (
        SELECT sum($3[array_position($2, u.lexeme)]
                   * {_WEIGHT.format(tf="u.tf", dl="length(m.content_tsv)", avgdl="$4")})
        FROM (
            SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
            FROM unnest(ts_filter(setweight(m.content_tsv, 'A', $2), '{{a}}')) t
        ) u
    ) AS score
    FROM memories m
    WHERE m.namespace = $1 AND %s AND ($9 IS NULL OR NOT m.content_tsv @@ $9) %s
    ORDER BY score DESC, m.id
    LIMIT $8
) r
"""

_FUNCTION_TEMPLATE = f"""
CREATE FUNCTION memagent_text_ranking(
    p_namespace text, p_session text, p_before timestamptz, p_query text, p_depth integer{{view_args}}
) RETURNS TABLE (id bigint, score double precision) LANGUAGE plpgsql STABLE ROWS 50 SECURITY DEFINER AS $fn$
DECLARE
    n double precision;
    avgdl double precision;
    lex text[];
    idf double precision[];
    ub double precision[];
    df bigint[];
    m integer;
    n_first integer := 0;
    n_last integer;
    i integer;
    j integer;
    q tsquery;
    t1 tsquery;
    t2 tsquery;
    t3 tsquery;
    done tsquery;
    more_ids bigint[];
    more_scores double precision[];
    sets bigint;
    explored bigint;
    q_text text;
    suffix double precision[];
    held bigint := 0;
    theta double precision := 0;
    ids bigint[];
    scores double precision[];
    scoring text;
    visible text;
BEGIN
    -- It runs as its owner (see the module's docstring): it answers for the namespace this transaction
    -- may read, and nothing else.
    visible := coalesce(current_setting('memagent.namespace', true), '');
    IF NOT (visible = p_namespace OR visible = '{ALL_NAMESPACES}'
            OR (visible = '' AND current_setting('role') = 'none'
                AND pg_has_role(session_user, current_user, 'MEMBER'))) THEN
        RAISE EXCEPTION 'memagent_text_ranking: this transaction may not read namespace %', p_namespace
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT s.docs, greatest(s.total_len::float8 / greatest(s.docs, 1), 1.0) INTO n, avgdl
    FROM memory_text_stats s WHERE s.namespace = p_namespace;
    IF n IS NULL OR n <= 0 THEN
        RETURN;
    END IF;
    -- The query's lexemes the namespace holds, highest bound (rarest) first.
    SELECT array_agg(t.lexeme ORDER BY t.ub DESC, t.lexeme), array_agg(t.idf ORDER BY t.ub DESC, t.lexeme),
           array_agg(t.ub ORDER BY t.ub DESC, t.lexeme), array_agg(t.df ORDER BY t.ub DESC, t.lexeme)
    INTO lex, idf, ub, df
    FROM (
        SELECT s.lexeme, s.df, w.idf,
               w.idf * {_WEIGHT.format(tf="s.max_tf::float8", dl="s.min_dl", avgdl="avgdl")} AS ub
        FROM (SELECT DISTINCT u.lexeme FROM unnest(to_tsvector('english', left(p_query, 100000))) u) q
        JOIN memory_term_stats s ON s.namespace = p_namespace AND s.lexeme = q.lexeme AND s.df > 0
        CROSS JOIN LATERAL (SELECT ln(1 + (n - s.df + 0.5) / (s.df + 0.5)) AS idf) w
    ) t;
    IF lex IS NULL THEN
        RETURN;
    END IF;
    m := array_length(lex, 1);
    scoring := format(
        $sql${_SCORE}$sql$,
        CASE WHEN n <= {SMALL} THEN '(m.content_tsv @@ $5) IS TRUE' ELSE 'm.content_tsv @@ $5' END,
        CASE WHEN p_session IS NOT NULL THEN 'AND m.session_id = $6' ELSE '' END
        || CASE WHEN p_before IS NOT NULL THEN ' AND m.created_at < $7' ELSE '' END{{view_conditions}}
    );
    IF n <= {SMALL} THEN
        -- A small namespace: read its memories by the namespace index and score every match, in one pass.
        -- (The full-text index holds every namespace: a common word's entries would outnumber them.)
        EXECUTE scoring INTO ids, scores
            USING p_namespace, lex, idf, avgdl, memagent_any_lexeme(lex), p_session, p_before, p_depth,
                  done{{view_using}};
        RETURN QUERY SELECT * FROM unnest(ids, scores);
        RETURN;
    END IF;
    -- Pass 1, a lower bound of the final depth-th best score (theta): the memories holding the three rarest
    -- terms score high; too few of them, those holding two; still too few, those of the rarest terms that
    -- hold depth memories. Each step scores only memories no earlier step has (done) and keeps the best.
    t1 := memagent_any_lexeme(lex[1:1]);
    t2 := memagent_any_lexeme(lex[2:2]);
    t3 := memagent_any_lexeme(lex[3:3]);
    IF m >= 3 THEN
        q := t1 && t2 && t3;
        EXECUTE scoring INTO ids, scores
            USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done{{view_using}};
        done := q;
    END IF;
    IF m >= 2 AND coalesce(array_length(ids, 1), 0) < p_depth THEN
        q := (t1 && t2);
        IF m >= 3 THEN
            q := q || (t1 && t3) || (t2 && t3);
        END IF;
        EXECUTE scoring INTO more_ids, more_scores
            USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done{{view_using}};
        SELECT b.ids, b.scores INTO ids, scores
        FROM memagent_best(ids, scores, more_ids, more_scores, p_depth) b;
        done := q;
    END IF;
    IF coalesce(array_length(ids, 1), 0) < p_depth THEN
        LOOP
            n_first := n_first + 1;
            held := held + df[n_first];
            EXIT WHEN held >= p_depth OR n_first = m;
        END LOOP;
        q := memagent_any_lexeme(lex[1:n_first]);
        EXECUTE scoring INTO more_ids, more_scores
            USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done{{view_using}};
        SELECT b.ids, b.scores INTO ids, scores
        FROM memagent_best(ids, scores, more_ids, more_scores, p_depth) b;
        IF n_first = m THEN
            RETURN QUERY SELECT * FROM unnest(ids, scores);  -- every memory matching the query was scored
            RETURN;
        END IF;
        done := CASE WHEN done IS NULL THEN q ELSE done || q END;
    END IF;
    IF coalesce(array_length(ids, 1), 0) >= p_depth THEN
        theta := scores[p_depth];
    END IF;
    -- Pass 2: a memory can reach theta only if the bounds of the query terms it holds sum to theta. The
    -- candidates are the memories holding one of the minimal such sets of terms (an OR of ANDs, which the
    -- GIN index intersects); with too many sets, those holding one of the fewest rarest terms whose rest
    -- sums below theta.
    suffix := array_fill(0::float8, ARRAY[m + 1]);
    FOR i IN REVERSE m..1 LOOP
        suffix[i] := suffix[i + 1] + ub[i];
    END LOOP;
    WITH RECURSIVE c(last, total, conj) AS (
        SELECT g.t, ub[g.t], memagent_any_lexeme(lex[g.t:g.t]) FROM generate_series(1, m) AS g(t)
        WHERE suffix[g.t] >= theta
        UNION ALL
        SELECT h.t, c.total + ub[h.t], c.conj && memagent_any_lexeme(lex[h.t:h.t])
        FROM c CROSS JOIN LATERAL generate_series(c.last + 1, m) AS h(t)
        WHERE c.total < theta AND c.total + suffix[h.t] >= theta
    )
    SELECT count(*), count(*) FILTER (WHERE x.total >= theta),
           string_agg('(' || x.conj::text || ')', ' | ') FILTER (WHERE x.total >= theta)
    INTO explored, sets, q_text
    FROM (SELECT c.conj, c.total FROM c LIMIT {EXPLORE}) x;  -- the recursion stops there
    q := q_text::tsquery;
    IF explored >= {EXPLORE} OR sets > 64 THEN
        n_last := 0;
        WHILE n_last < m AND suffix[n_last + 1] >= theta LOOP
            n_last := n_last + 1;
        END LOOP;
        q := memagent_any_lexeme(lex[1:n_last]);
    END IF;
    EXECUTE scoring INTO more_ids, more_scores
        USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done{{view_using}};
    RETURN QUERY SELECT * FROM unnest(ids, scores) UNION ALL SELECT * FROM unnest(more_ids, more_scores)
        ORDER BY 2 DESC, 1 LIMIT p_depth;
END
$fn$;
"""

# Revision 0013 (memory that learns): three more arguments, the view of the namespace recall sees — kinds
# (NULL: all), as of (NULL: now: what memagent believes now), archived ones too — the same conditions as
# memagent.store.scope's View, so both sides of a hybrid recall see the same memories.
_VIEW_ARGS = ", p_kinds text[], p_as_of timestamptz, p_archived boolean"
_VIEW_CONDITIONS = """
        || CASE WHEN p_kinds IS NOT NULL THEN ' AND m.kind = ANY ($10)' ELSE '' END
        || CASE WHEN p_as_of IS NULL THEN ' AND m.expired_at IS NULL'
                || CASE WHEN coalesce(p_archived, false) THEN '' ELSE ' AND m.archived_at IS NULL' END
           ELSE ' AND coalesce(m.learned_at, m.created_at) <= $11'
                || ' AND (m.expired_at IS NULL OR m.expired_at > $11)'
                || CASE WHEN coalesce(p_archived, false) THEN ''
                        ELSE ' AND (m.archived_at IS NULL OR m.archived_at > $11)' END
           END"""

VIEW_USING = ", p_kinds, p_as_of"

SIGNATURE = "memagent_text_ranking(text, text, timestamptz, text, integer)"
VIEW_SIGNATURE = "memagent_text_ranking(text, text, timestamptz, text, integer, text[], timestamptz, boolean)"


def function(view: bool) -> str:
    """CREATE FUNCTION memagent_text_ranking: revision 0011's five arguments, or 0013's eight."""
    return (
        _FUNCTION_TEMPLATE.replace("{view_args}", _VIEW_ARGS if view else "")
        .replace("{view_conditions}", _VIEW_CONDITIONS if view else "")
        .replace("{view_using}", VIEW_USING if view else "")
    )

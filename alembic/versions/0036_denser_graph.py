"""HNSW graphs built and grown with ef_construction 128 instead of pgvector's default 64

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-04

A graph built with 64 candidates per insertion missed up to 1.1% of the 10 nearest at 100,000 x 1536
(recall@10 0.989-0.999 at ef_search 100 over five builds; on the 0.993 graph ef_search 120 found none of
the missing ones: nodes the search did not reach). Built with 128, every one of four graphs found all of
them, at ef_search 40 too, for 40-70% more build time and no measurable cost to a store or a recall
(docs/benchmarks.md, "Every target in one sitting").

Every HNSW index on memories (the table's, a namespace's own graph) is altered, not rebuilt: what is
inserted from now on and every later build (a bulk import, `memagent index --rebuild`, `reembed`) uses
128; the graph already built keeps its reach until then (`memagent index --rebuild` rebuilds it), and the
upgrade takes no time of its own at any size. It waits up to 500 ms for an index build under way and 200 ms
for each index (an index in use by a long transaction is left at its value until its next build, and
`memagent index` says so), so that recall and stores never queue behind it for long. (Revisions before
this one build with memagent.store.hnsw's parameters as they are now: a database made from now on has 128
from its first revision.)
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# pgvector alters ef_construction under an ACCESS EXCLUSIVE lock on the index: while that waits, recall and
# stores queue behind it. So the table is locked first (SHARE UPDATE EXCLUSIVE: no index build can drop or
# add indexes meanwhile, and recall and stores pass), for at most 500 ms, under deadlock_timeout: a graph
# built concurrently waits for this transaction to end, and waiting longer for it made PostgreSQL cancel
# that build as a deadlock. Each index is given 200 ms: one that a long transaction is using keeps its value
# until its next build (`memagent index` says so). (A subtransaction per statement: a lock it got is kept
# once it ends without error, until the migration commits: revisions after this one run with them held.)
_EVERY_GRAPH = """
DO $$
DECLARE
  graph regclass;
  waited text := current_setting('lock_timeout');
BEGIN
  -- pgvector declares ef_construction's lock when its library loads: before that, a backend alters it
  -- under a weaker lock (PostgreSQL does not know the option yet). Loaded first: every index alike.
  PERFORM '[1]'::vector;
  PERFORM set_config('lock_timeout', '500ms', true);
  BEGIN
    LOCK TABLE memories IN SHARE UPDATE EXCLUSIVE MODE;
  EXCEPTION WHEN lock_not_available THEN
    RAISE NOTICE 'memories is busy: its HNSW indexes keep their ef_construction until their next build';
    PERFORM set_config('lock_timeout', waited, true);
    RETURN;
  END;
  PERFORM set_config('lock_timeout', '200ms', true);
  FOR graph IN
    SELECT i.indexrelid::regclass FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
    WHERE i.indrelid = 'memories'::regclass AND a.amname = 'hnsw'
    ORDER BY i.indexrelid
  LOOP
    BEGIN
      EXECUTE format('ALTER INDEX %s SET (ef_construction = {ef})', graph);
    EXCEPTION WHEN lock_not_available THEN
      RAISE NOTICE '% is in use: it keeps its ef_construction until its next build', graph;
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', waited, true);
END $$"""


def upgrade() -> None:
    op.execute(_EVERY_GRAPH.format(ef=128))


def downgrade() -> None:
    op.execute(_EVERY_GRAPH.format(ef=64))

"""Storage: PostgreSQL + pgvector. Engines, the embedded server, ORM models, repositories, the HNSW index."""

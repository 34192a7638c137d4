"""labkit.vectordb: the embedded store, the throwaway PostgreSQL, and their errors."""
from __future__ import annotations

import numpy as np
import psutil
import pytest

from labkit import vectordb


def test_normalise_rows():
    rows = vectordb.normalise_rows([[3.0, 4.0], [0.0, 2.0]])
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0)
    with pytest.raises(ValueError, match="all-zero"):
        vectordb.normalise_rows([[0.0, 0.0]])


def test_qdrant_local_mode_searches_exactly(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    for client in (vectordb.qdrant(), vectordb.qdrant(tmp_path / "store")):
        assert vectordb.qdrant_index(client, "chunks", vectors, [{"i": i} for i in range(300)]) == 300
        hits = vectordb.qdrant_search(client, "chunks", vectors[42], k=5)
        assert hits[0][0] == 42 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        exact = np.argsort(-(vectordb.normalise_rows(vectors) @ vectordb.normalise_rows(vectors[7])[0]))[:5]
        assert [i for i, _ in vectordb.qdrant_search(client, "chunks", vectors[7], k=5)] == exact.tolist()
        client.close()
    with pytest.raises(ValueError):
        vectordb.qdrant_index(vectordb.qdrant(), "empty", np.zeros((0, 4)))


def _postgres_processes(folder):
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and any(str(folder) in part for part in p.info["cmdline"] or [])]


def test_throwaway_postgres_with_pgvector_starts_and_stops(monkeypatch):
    monkeypatch.delenv(vectordb.DATABASE_ENV, raising=False)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    with vectordb.postgres() as db:
        folder = db.folder
        assert db.throwaway and folder.is_dir() and _postgres_processes(folder)
        assert vectordb.pg_load(db, "chunks", vectors, [f"t{i}" for i in range(500)]) == 500
        query = vectors[3]
        exact = [r[0] for r in db.conn.execute("SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 5", (query,))]
        vectordb.pg_hnsw_index(db, "chunks")
        plan = "\n".join(r[0] for r in db.conn.execute("EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 5", (query,)))
        assert "chunks_hnsw" in plan, plan
        approx = [r[0] for r in db.conn.execute("SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 5", (query,))]
        assert exact[0] == approx[0] == 3
    assert not folder.exists(), "the throwaway server's folder is deleted"
    assert not _postgres_processes(folder), "the throwaway server is stopped"


def test_unreachable_database_url_gives_a_clear_error(monkeypatch, tmp_path):
    url = f"postgresql://someone:secret@/nodb?host={tmp_path}&port=6543"
    monkeypatch.setenv(vectordb.DATABASE_ENV, url)
    with pytest.raises(vectordb.DatabaseError) as error:
        with vectordb.postgres(timeout=2):
            pass
    message = str(error.value)
    assert "Could not connect" in message and vectordb.DATABASE_ENV in message and "Fix" in message
    assert "secret" not in message, "the password is never printed"


def test_server_that_cannot_start_gives_a_clear_error(monkeypatch):
    import pgserver

    monkeypatch.delenv(vectordb.DATABASE_ENV, raising=False)

    def broken(folder, cleanup_mode=None):
        raise OSError("no space left on device")

    monkeypatch.setattr(pgserver, "get_server", broken)
    with pytest.raises(vectordb.DatabaseError, match="(?s)Could not start a throwaway PostgreSQL in .*Fix"):
        with vectordb.postgres():
            pass


def test_table_names_are_checked():
    with pytest.raises(ValueError, match="identifier"):
        vectordb.pg_load(vectordb.Postgres(conn=None, url="", throwaway=True), "x; DROP", np.ones((1, 2)))

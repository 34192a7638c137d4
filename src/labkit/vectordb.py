"""Vector stores for the labs: an embedded one with nothing to run, and a real PostgreSQL.

- Qdrant's local mode (``qdrant-client``): ``QdrantClient(":memory:")`` or
  ``QdrantClient(path=folder)``, in the lab's own process. It searches exactly (it
  compares the query with every stored vector), which makes it the reference an
  approximate index is measured against.
- PostgreSQL with pgvector: ``postgres()`` starts a throwaway server from the ``pgserver``
  wheel (PostgreSQL 16 with pgvector, on a Unix socket in a temporary folder) and stops
  and deletes it when the block ends, or connects to a server you already run when you
  name it in ``LABKIT_DATABASE_URL`` (or pass ``url=``).

Errors say what failed, where (the URL, without its password, or the folder) and the fix.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATABASE_ENV = "LABKIT_DATABASE_URL"


class DatabaseError(RuntimeError):
    """PostgreSQL could not be started or reached; the message names where and the fix."""


# ----------------------------------------------------------------------------- vectors

def normalise_rows(vectors) -> np.ndarray:
    """Each row scaled to length 1 (float32), so that a dot product is a cosine."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an all-zero vector has no direction: cosine similarity is undefined for it")
    return vectors / norms


# ----------------------------------------------------------------------------- Qdrant, embedded

def qdrant(path=None):
    """A Qdrant client in local mode: in memory, or persisted in the folder ``path``."""
    from qdrant_client import QdrantClient

    if path is None:
        return QdrantClient(":memory:")
    Path(path).mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(path))


def qdrant_index(client, collection: str, vectors, payloads=None, batch: int = 1000) -> int:
    """(Re)create ``collection`` with cosine distance and upsert one point per row, ids 0..n-1.

    Returns the number of points stored. ``payloads`` is one dict per row (e.g. the text).
    """
    from qdrant_client import models as qm

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError("qdrant_index needs a non-empty 2-D array of vectors (one row per chunk)")
    if payloads is not None and len(payloads) != len(vectors):
        raise ValueError(f"{len(payloads)} payloads for {len(vectors)} vectors")
    if client.collection_exists(collection):
        client.delete_collection(collection)
    client.create_collection(collection, vectors_config=qm.VectorParams(size=vectors.shape[1], distance=qm.Distance.COSINE))
    for start in range(0, len(vectors), batch):
        stop = min(start + batch, len(vectors))
        client.upsert(collection, points=qm.Batch(
            ids=list(range(start, stop)), vectors=vectors[start:stop].tolist(),
            payloads=None if payloads is None else list(payloads[start:stop])))
    return client.count(collection).count


def qdrant_search(client, collection: str, query_vector, k: int) -> list[tuple[int, float]]:
    """The ``k`` nearest points to one query: ``[(id, cosine score), ...]``, best first."""
    query = np.asarray(query_vector, dtype=np.float32).ravel().tolist()
    points = client.query_points(collection, query=query, limit=k).points
    return [(int(p.id), float(p.score)) for p in points]


# ----------------------------------------------------------------------------- PostgreSQL

@dataclass
class Postgres:
    """An open connection (autocommit, pgvector types registered) and where it goes."""
    conn: object  # psycopg.Connection
    url: str  # without a password
    throwaway: bool  # True: a pgserver started for this block, deleted afterwards
    folder: Path | None = None  # the throwaway server's data folder


def redact(url: str) -> str:
    """``url`` with any password replaced by ***, safe to print."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _connect(url: str, timeout: int):
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout)
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as error:
        conn.close()
        raise DatabaseError(
            f"Connected to {redact(url)} but could not enable pgvector: {error}".rstrip() +
            "\nFix: install pgvector in that server (https://github.com/pgvector/pgvector#installation) "
            f"and let this user run CREATE EXTENSION vector, or unset {DATABASE_ENV} to use a throwaway "
            "server that has it.") from error
    register_vector(conn)
    return conn


@contextmanager
def postgres(url: str | None = None, timeout: int = 10):
    """A PostgreSQL with pgvector for the length of a ``with`` block; yields a ``Postgres``.

    With ``url`` (or ``LABKIT_DATABASE_URL`` set) it connects to that server and leaves it
    running afterwards. Otherwise it starts a throwaway server from the ``pgserver`` wheel
    in a new temporary folder and, when the block ends, stops it and deletes the folder.
    Either way the connection is closed. ``DatabaseError`` says what failed and the fix.
    """
    url = url or os.environ.get(DATABASE_ENV, "").strip() or None
    if url is not None:
        import psycopg

        try:
            conn = _connect(url, timeout)
        except psycopg.Error as error:
            raise DatabaseError(
                f"Could not connect to PostgreSQL at {redact(url)}: {str(error).strip()}\n"
                f"Fix: start that server (or correct the URL), or unset {DATABASE_ENV} to use a "
                "throwaway server that labkit starts itself.") from error
        try:
            yield Postgres(conn, redact(url), throwaway=False)
        finally:
            conn.close()
        return

    try:
        import warnings

        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as error:
        raise DatabaseError(
            "The package pgserver, which carries a PostgreSQL with pgvector, is not installed.\n"
            f"Fix: pip install pgserver==0.1.4 pgvector==0.5.1 'psycopg[binary]==3.3.9', or set {DATABASE_ENV} "
            "to the URL of a PostgreSQL you run that has pgvector.") from error
    parent = Path(tempfile.mkdtemp(prefix="labkit-pg-"))
    folder = parent / "pgdata"
    server = None
    try:
        try:
            server = pgserver.get_server(folder, cleanup_mode="delete")
            conn = _connect(server.get_uri(), timeout)
        except DatabaseError:
            raise
        except Exception as error:
            log = folder / "log"
            tail = log.read_text(errors="replace")[-800:] if log.is_file() else "(no server log was written)"
            raise DatabaseError(
                f"Could not start a throwaway PostgreSQL in {folder}: {error.__class__.__name__}: {error}\n"
                f"Server log (end):\n{tail}\n"
                f"Fix: check free disk space and that {parent.parent} is writable, or set {DATABASE_ENV} to "
                "the URL of a PostgreSQL you run that has pgvector. The labs keep working on the "
                "embedded store (Qdrant local mode) without it.") from error
        try:
            yield Postgres(conn, f"throwaway PostgreSQL in {folder}", throwaway=True, folder=folder)
        finally:
            conn.close()
    finally:
        if server is not None:
            server.cleanup()  # stops the server; cleanup_mode="delete" also removes its data
        shutil.rmtree(parent, ignore_errors=True)


def _check_table(table: str) -> None:
    """Table names go into SQL text, so only plain identifiers are allowed."""
    if not table.isidentifier():
        raise ValueError(f"table name {table!r} must be a plain identifier")


def pg_load(db: Postgres, table: str, vectors, texts=None) -> int:
    """(Re)create ``table (id int, text, embedding vector(d))`` and COPY the rows in; ids 0..n-1."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError("pg_load needs a non-empty 2-D array of vectors")
    if texts is not None and len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts for {len(vectors)} vectors")
    _check_table(table)
    conn = db.conn
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, text text, embedding vector({vectors.shape[1]}))")
    with conn.cursor() as cur, cur.copy(f"COPY {table} (id, text, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "text", "vector"])
        for i, vector in enumerate(vectors):
            copy.write_row((i, None if texts is None else texts[i], vector))
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def pg_hnsw_index(db: Postgres, table: str, m: int = 16, ef_construction: int = 64) -> None:
    """An HNSW index on ``table.embedding`` for cosine distance (pgvector's ``<=>``)."""
    _check_table(table)
    db.conn.execute(f"DROP INDEX IF EXISTS {table}_hnsw")
    db.conn.execute(f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops) "
                    f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})")

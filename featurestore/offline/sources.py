"""Reading sources with DuckDB: each source becomes a SQL expression a query can select from.

reader = SourceReader(duckdb_connection(), repo_path, catalog.sources)
sql = reader.relation(source)            # e.g. "read_parquet(['/repo/data/x.parquet'], ...)"
schema = reader.schema(source)           # its real Arrow schema
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from ..definitions import (
    CsvSource,
    DataFrameSource,
    DataSource,
    DetachedDataFrameSource,
    DuckDBSource,
    ParquetSource,
    PushSource,
)
from ..errors import DefinitionError

#: DuckDB's names of its integer types of up to 64 bits, of the wider ones, and of its floats (as
#: DESCRIBE and a relation's types print them)
DUCKDB_INTEGERS = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
DUCKDB_WIDE_INTEGERS = frozenset({"HUGEINT", "UHUGEINT"})
DUCKDB_FLOATS = frozenset({"FLOAT", "DOUBLE"})


def duckdb_connection(
    threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up the way every featurestore query expects (UTC).

    `memory_limit` (e.g. "512MB") bounds DuckDB's buffers; beyond it, it spills to a temp folder."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
    return con


def arrow_table(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run a query and return all its rows as an Arrow table (DuckDB 1.x and 2.x spell this differently)."""
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


def arrow_batches(
    con: duckdb.DuckDBPyConnection, sql: str, batch_size: int = 100_000
) -> pa.RecordBatchReader:
    """Run a query and stream its rows as Arrow record batches, so memory stays bounded."""
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
    return fetch(batch_size)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class SourceReader:
    """Turns sources into DuckDB relations on one connection; registers what it needs once."""

    def __init__(self, con: duckdb.DuckDBPyConnection, repo_path: Path, sources: Mapping[str, DataSource]):
        self.con = con
        self.repo_path = Path(repo_path)
        self.sources = sources
        self._registered: set[str] = set()
        self._attached: dict[str, str] = {}

    def relation(self, source: DataSource) -> str:
        """A SQL expression (usable after FROM) yielding the source's rows."""
        if isinstance(source, PushSource):
            if source.batch_source is None:
                raise DefinitionError(
                    f"push source '{source.name}' has no batch_source: its rows exist only where they were pushed"
                )
            return self.relation(source.batch_source)
        if isinstance(source, ParquetSource):
            return f"read_parquet({self._files(source)}, union_by_name = true)"
        if isinstance(source, CsvSource):
            return (
                f"read_csv({self._files(source)}, header = true, union_by_name = true, "
                f"delim = {quote_literal(source.delimiter)})"
            )
        if isinstance(source, DataFrameSource):
            view = f"__df_{source.name}"
            if view not in self._registered:
                self.con.register(view, source.table)
                self._registered.add(view)
            return quote_ident(view)
        if isinstance(source, DetachedDataFrameSource):
            raise DefinitionError(
                f"source '{source.name}' is a DataFrameSource: its rows live only in the process that defined it; "
                "open the store from that process (FeatureStore(...).apply() in the notebook) to read it"
            )
        if isinstance(source, DuckDBSource):
            return self._duckdb(source)
        raise DefinitionError(f"source '{source.name}': cannot read sources of type {type(source).__name__}")

    def schema(self, source: DataSource) -> pa.Schema:
        """The source's real Arrow schema (reads metadata, or at most a sample for CSV)."""
        try:
            return arrow_table(self.con, f"SELECT * FROM {self.relation(source)} LIMIT 0").schema
        except duckdb.Error as e:
            raise DefinitionError(f"source '{source.name}': cannot be read: {first_line(e)}") from None

    def _files(self, source: ParquetSource | CsvSource) -> str:
        pattern = Path(source.path)
        if not pattern.is_absolute():
            pattern = self.repo_path / pattern
        matches = sorted(glob.glob(str(pattern), recursive=True))
        if not matches:
            raise DefinitionError(
                f"source '{source.name}': no file matches path '{source.path}' (looked for {pattern})"
            )
        return "[" + ", ".join(quote_literal(m) for m in matches) + "]"

    def _duckdb(self, source: DuckDBSource) -> str:
        if source.query is not None:
            # A query may read other sources by name: expose each as a view first.
            for name, other in self.sources.items():
                if name != source.name and name not in self._registered and name in source.query:
                    try:
                        self.con.execute(
                            f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS "
                            f"SELECT * FROM {self.relation(other)}"
                        )
                    except DefinitionError:
                        continue  # only an error if the query really reads it; DuckDB will say so
                    self._registered.add(name)
            if source.database:
                alias = self._attach(source, source.database)
                self.con.execute(f"USE {alias}")
            return f"({source.query})"
        table = source.table
        assert table is not None  # a DuckDBSource has a table or a query (checked when it is defined)
        if source.database:
            return f"{self._attach(source, source.database)}.{quote_ident(table)}"
        return quote_ident(table)

    def _attach(self, source: DuckDBSource, database: str) -> str:
        db = Path(database)
        db = db if db.is_absolute() else self.repo_path / db
        if str(db) not in self._attached:
            if not db.exists():
                raise DefinitionError(f"source '{source.name}': database file '{database}' not found ({db})")
            alias = f"__db{len(self._attached)}"
            self.con.execute(f"ATTACH {quote_literal(str(db))} AS {alias} (READ_ONLY)")
            self._attached[str(db)] = alias
        return self._attached[str(db)]


def first_line(e: Exception) -> str:
    """The first line of an exception's message (DuckDB's carry long hints), or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

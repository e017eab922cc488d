"""Source mappings: point the pipeline at a real export by writing one YAML file.

Real data does not arrive in the canonical schema (grading.contract): a CRM or ERP export
has its own column names, date formats, encodings, one row per order *line*, status words
of its own, and often no customer table at all. A mapping file says, per canonical table,
where the rows come from (a table of a SQL source, or a file pattern of a CSV / Parquet
drop in a local folder or anywhere Airflow's ObjectStoragePath reaches) and how each
canonical column is made from the source's columns. Extraction then reads exactly the
rows of a data interval and hands canonical frames to grading.extract, which replaces the
interval in raw as it does for a canonical SQL source.

Like the rule files, a mapping is data: it is checked when loaded, every mistake names the
file, line, table and field, and nothing in it is ever evaluated as code. Expressions are
a closed set (column, value, multiply, add, concat, coalesce) applied column-wise with
pandas, so half a million export lines map in about a second.

The format is documented with an example per feature in include/mappings/README.md.

The modules, each importing only those before it: model (the checked mapping as data),
checker (mapping file -> SourceMapping), values (source values -> canonical ones),
files (finding and reading the files of a drop), mapped (MappedSource: a table's rows).
"""

from grading.convert import SourceDataError
from grading.sources.checker import load_mapping, mappings_dir
from grading.sources.mapped import MappedRows, MappedSource
from grading.sources.model import MappingError, SourceMapping

__all__ = ["MappedRows", "MappedSource", "MappingError", "SourceDataError", "SourceMapping", "load_mapping",
           "mappings_dir"]

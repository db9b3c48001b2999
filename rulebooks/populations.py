"""Population tables for stratified sortition: `population/<name>.csv` (district, sex,
age_band, population), here or in a `population/` folder of a `MINJU_RULEBOOK_DIRS` entry.

The shipped `seoul-2019` is ILLUSTRATIVE (see its header). A real table is an official export
(Seoul Open Data Plaza / KOSIS, resident population by district, sex and age) reshaped to the
same four columns and saved under a new name; `load_population_file` reads any such CSV.
A table's digest is the SHA-256 of the file's bytes, as `sha256sum` prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from models.sortition import PopulationRow, SortitionError, parse_population, sha256_hex

BUILTIN_DIR = Path(__file__).parent / "population"
DEFAULT_POPULATION = "seoul-2019"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class PopulationTable:
    name: str
    digest: str
    rows: list[PopulationRow]


def load_population_file(path: Path, *, name: str | None = None) -> PopulationTable:
    data = path.read_bytes()
    try:
        rows = parse_population(data.decode("utf-8"))
    except (UnicodeDecodeError, SortitionError) as exc:
        raise SortitionError(f"{path}: {exc}", field="population") from exc
    return PopulationTable(name=name or path.stem, digest=sha256_hex(data), rows=rows)


def load_population(name: str, extra_dirs: Iterable[str] = ()) -> PopulationTable:
    """The table called `name` (no paths: names only, so API callers cannot read files)."""
    if not _NAME.match(name):
        raise SortitionError(f"not a population table name: {name!r}", field="population")
    for directory in [BUILTIN_DIR, *(Path(d) / "population" for d in extra_dirs)]:
        path = directory / f"{name}.csv"
        if path.is_file():
            return load_population_file(path, name=name)
    raise SortitionError(f"unknown population table {name!r}", field="population")

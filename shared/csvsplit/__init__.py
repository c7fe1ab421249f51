"""A CSV input split into parts at row boundaries, for sharding: each part is the input's header line plus a
contiguous run of its records, so Azure ML scores the parts on several workers at once and the join numbers
a part's predictions in the whole input (the part's first row plus the row within the part).

Rows are numbered as the join numbers them (csvfiles' rules, pandas'): the records after the header; a blank
line (empty, or only spaces and tabs) is no row; a quoted cell may hold LF, CR or CRLF; a CR that no LF
follows ends a line (old Mac files). Every byte is kept as the input has it (CRLF stays CRLF), except that a
BOM, the blank lines before the header and those between the header and the first row are left out (they
hold no row). An input without data rows (empty, header only, ...) gives no parts and `infos` == []; blank
lines after the last row stay in the last part, so every part has rows.

Block ends depend on the bytes only, never on the chunks they came in, so an input always splits into the
same parts. The blocks are pieces of the chunks, and a part hands on the chunks themselves: only a chunk a
part boundary falls in, a line that runs from one chunk into the next, and lines with quotes are copied.

splitter  CsvSplitter, its Parts (the header line, then the input's chunks) and their PartInfos
records   the input in blocks of whole lines, the header split off, the rows of each run of blocks counted
"""

from shared.csvsplit.records import BLOCK_BYTES
from shared.csvsplit.splitter import CsvSplitter, Part, PartInfo

__all__ = ["BLOCK_BYTES", "CsvSplitter", "Part", "PartInfo"]

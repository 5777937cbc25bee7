"""Sales and usage reports from distributors and retailers: read, recognise, parse, validate,
and write Consonance's sales-import file. Pure conversions: no I/O beyond the files named.

* ``table``: a report file seen as rows of text cells (``Table``), whatever its container.
* ``read``: sniffing (gzip/zip wrappers, BOM and UTF-16, CP1252, text disguised as ``.xls``,
  xlsx with a named sheet, legacy xls) into a streamed ``Table``.
* ``layouts``: one small declarative spec per partner layout and version (exact header set,
  column roles, date format, sign of returns, trailer rows); recognising a header, and the
  difference to the nearest layout when none fits.
* ``parse``: a ``Table`` read through a layout into ``SalesLine``/``UsageLine`` records and
  ``Rejection``s, with the file's own totals for reconciliation.
* ``validate``: the per-line checks (ISBN/EAN with python-stdnum, ISO 4217, numbers, dates,
  periods), memoised per distinct cell so a million-line report checks each ISBN once.
* ``lines``: those records.
* ``consonance_import``: Consonance's sales-import template (xlsx) and the summary CSV.
"""

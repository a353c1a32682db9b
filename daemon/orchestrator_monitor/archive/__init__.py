"""Archival: a run's files, events and rows as a BagIt 1.0 bag, published atomically, verifiable later.

`tree` walks the run directory without following anything, `copier` copies and hashes in one
read, `journal` makes that resumable, `snapshot` takes the database rows, `bag` writes the tag
files and publishes, `verify` checks fixity, and `archiver` is the one archival pass (the
daemon runs passes from `finish/worker.py`). Nothing here knows the reports.
"""

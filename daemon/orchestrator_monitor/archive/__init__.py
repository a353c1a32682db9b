"""Archival: a run's files, events and rows as a BagIt 1.0 bag, published atomically, verifiable later.

`tree` walks the run directory without following anything, `copier` copies and hashes in one
read, `journal` makes that resumable, `snapshot` takes the database rows, `bag` writes the tag
files and publishes, `verify` checks fixity, `archiver` is the one archival pass and `worker`
runs passes for the daemon.
"""

"""Offload: copies of the published bags at other places (S3-compatible buckets, other directories).

Between `service` (which schedules a pass) and `finish` (which publishes the bags): a pass sends, per
target, each bag the catalog has without a confirmed copy there, oldest first; every file is confirmed
against the bag's manifest digest (by the S3 server, or by re-hashing the copy) and journalled, so a
killed daemon resumes where it stopped; the bag's location is recorded once every file is confirmed.
"""

"""The offload journal in the monitor's database: each file a target has confirmed (a restarted daemon
sends only the others) and each multipart upload under way (resumed, or aborted, after a kill -9)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from ..ledger.store import MonitorStore, monitor_offload_files, monitor_offload_uploads

_F = monitor_offload_files
_U = monitor_offload_uploads


@dataclass(frozen=True, slots=True)
class Confirmed:
    path: str
    sha256: str
    bytes: int
    remote_checksum: str


class OffloadJournal:
    def __init__(self, store: MonitorStore) -> None:
        self._store = store

    def confirmed(self, target: str, run_id: str) -> dict[str, Confirmed]:
        query = select(_F).where(_F.c.target == target, _F.c.run_id == run_id)
        with self._store.engine.connect() as connection:
            rows = connection.execute(query).all()
        return {r.path: Confirmed(r.path, r.sha256, int(r.bytes), r.remote_checksum) for r in rows}

    def confirm(self, target: str, run_id: str, files: list[Confirmed], at: str) -> None:
        """Record these files as confirmed at `target`, in one transaction."""
        rows = [
            {
                "target": target,
                "run_id": run_id,
                "path": done.path,
                "sha256": done.sha256,
                "bytes": done.bytes,
                "remote_checksum": done.remote_checksum,
                "confirmed_at": at,
            }
            for done in files
        ]
        upsert = self._store.insert(_F)
        kept = {name: upsert.excluded[name] for name in ("sha256", "bytes", "remote_checksum", "confirmed_at")}
        with self._store.write() as connection:
            connection.execute(
                upsert.on_conflict_do_update(index_elements=["target", "run_id", "path"], set_=kept), rows
            )

    def uploads(self, target: str, run_id: str, at: str) -> BagUploads:
        return BagUploads(self._store, target, run_id, at)


class BagUploads:
    """`targets.Uploads` for one bag at one target."""

    def __init__(self, store: MonitorStore, target: str, run_id: str, at: str) -> None:
        self._store = store
        self._key = (_U.c.target == target, _U.c.run_id == run_id)
        self._row = {"target": target, "run_id": run_id, "started_at": at}

    def find(self, path: str) -> str | None:
        with self._store.engine.connect() as connection:
            found = connection.execute(select(_U.c.upload_id).where(*self._key, _U.c.path == path)).scalar()
        return None if found is None else str(found)

    def started(self, path: str, upload_id: str) -> None:
        row = {**self._row, "path": path, "upload_id": upload_id}
        upsert = self._store.insert(_U).values(row)
        with self._store.write() as connection:
            connection.execute(upsert.on_conflict_do_update(index_elements=["target", "run_id", "path"], set_=row))

    def ended(self, path: str) -> None:
        with self._store.write() as connection:
            connection.execute(delete(_U).where(*self._key, _U.c.path == path))

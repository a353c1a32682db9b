"""A sink's durable cursor: the last `seq` up to which every event is delivered, in a small file.

A network sink that was down, or a daemon restarted meanwhile, resends from the event log
what lies past the cursor. The file is replaced atomically (`durable.replace_files`), so a
crash leaves the old value or the new one; an old value only means a few events are sent
again, which the receiver's de-duplication absorbs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

from ...durable import replace_files
from ...errors import Unavailable

logger = logging.getLogger(__name__)


class SentCursor:
    """`seq` is None until something was delivered (or the file says so); `save` writes it when it moved."""

    def __init__(self, path: Path, seq: int | None) -> None:
        self.path = path
        self.seq = seq
        self._saved = seq

    @classmethod
    def load(cls, path: Path) -> SentCursor:
        """The saved cursor; a file that is not one is said once and started afresh (it is replaced at
        the next save), since refusing to start the daemon over it would stop far more than this sink."""
        try:
            return cls(path, read_cursor(path))
        except Unavailable as err:
            logger.error("%s; the sink starts from this run's first event", err)
            return cls(path, None)

    def advance(self, seq: int) -> None:
        if self.seq is None or seq > self.seq:
            self.seq = seq

    def save(self) -> None:
        seq = self.seq
        if seq is None or seq == self._saved:
            return
        replace_files({self.path: orjson.dumps({"seq": seq})})
        self._saved = seq


def read_cursor(path: Path) -> int | None:
    """The saved `seq`; None when there is no file. `Unavailable` for a file that is not a cursor."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise Unavailable(f"cannot read the cursor {path}: {exc}") from None
    seq = data.get("seq") if isinstance(data, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise Unavailable(f"cannot read the cursor {path}: no integer 'seq' in it")
    return seq

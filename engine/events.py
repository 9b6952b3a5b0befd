"""The events log: every state change appended to the store, followed like ``docker events``.

There is no daemon to broadcast events, so each change is a row in the ``events`` table of the
engine's SQLite database, written in the same transaction as the change it reports where possible.
Followers (``portside events``, the side panel) poll for rows past the last id they saw; a poll is
one indexed query, cheap enough at 10 Hz.
"""

from __future__ import annotations

import json
import sqlite3
import time

from .records import record
from .store.db import Database

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Iterator


Database.register_schema("events", [
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}'
    )""",
])


@record(frozen=True)
class Event:
    id: int
    time: float
    type: str          # image, container, volume, network, builder
    action: str        # pull, tag, untag, delete, import, load, save, create, start, die, destroy...
    actor: str         # the object's id
    attributes: dict

    def to_docker(self) -> dict:
        """Docker's ``events --format json`` shape."""
        return {"Type": self.type, "Action": self.action,
                "Actor": {"ID": self.actor, "Attributes": self.attributes},
                "time": int(self.time), "timeNano": int(self.time * 1e9), "id": self.actor}


def emit(conn: sqlite3.Connection, type_: str, action: str, actor: str, **attributes: str) -> None:
    """Append one event inside the caller's transaction."""
    conn.execute("INSERT INTO events (time, type, action, actor, attributes) VALUES (?, ?, ?, ?, ?)",
                 (time.time(), type_, action, actor, json.dumps(attributes, sort_keys=True)))


def _row(row: sqlite3.Row) -> Event:
    return Event(row["id"], row["time"], row["type"], row["action"], row["actor"],
                 json.loads(row["attributes"]))


def read_events(db: Database, *, after_id: int = 0, since: float | None = None,
                until: float | None = None, limit: int = 1000) -> list[Event]:
    sql = "SELECT * FROM events WHERE id > ?"
    params: list = [after_id]
    if since is not None:
        sql += " AND time >= ?"
        params.append(since)
    if until is not None:
        sql += " AND time <= ?"
        params.append(until)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return [_row(r) for r in db.query(sql, params)]


def follow(db: Database, *, since: float | None = None, interval: float = 0.1,
           stop=lambda: False) -> Iterator[Event]:
    """Yield events as they are appended; starts at ``since`` (or now) and runs until ``stop()``."""
    if since is None:
        rows = db.query("SELECT COALESCE(MAX(id), 0) AS m FROM events")
        last = rows[0]["m"]
    else:
        last = 0
    while not stop():
        batch = read_events(db, after_id=last, since=since)
        for event in batch:
            last = event.id
            yield event
        if not batch:
            time.sleep(interval)

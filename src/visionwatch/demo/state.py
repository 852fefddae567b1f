"""The demo's own account, kept in `demo.json` in its data dir so that a second run continues it.

It holds a password and a key in the clear: it is a demo's, on the machine
that runs it (the file is made readable by its owner only).
"""

import json
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from visionwatch.db.engine import Database
from visionwatch.demo.fleet import Incidents
from visionwatch.store import accounts

WORKSPACE = "demo"
EMAIL = "demo@example.com"
FILE = "demo.json"


class DemoError(Exception):
    """The data dir cannot hold this demo (said why, for the command line)."""


@dataclass(frozen=True, slots=True)
class DemoState:
    email: str
    password: str
    api_key: str
    seed: int
    start: datetime  # the history's first moment
    end: datetime  # the history's last: live traffic follows
    incidents: Incidents
    ready: bool = False  # the history is complete and its alerts replayed

    def save(self, data_dir: Path) -> None:
        data = asdict(self)
        data.update(
            start=self.start.isoformat(),
            end=self.end.isoformat(),
            incidents=self.incidents.as_dict(),
        )
        path = data_dir / FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)

    @classmethod
    def load(cls, data_dir: Path) -> "DemoState | None":
        path = data_dir / FILE
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(
            email=data["email"],
            password=data["password"],
            api_key=data["api_key"],
            seed=int(data["seed"]),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            incidents=Incidents.from_dict(data["incidents"]),
            ready=bool(data["ready"]),
        )


def prepare(database: Database, data_dir: Path, now: datetime, days: int) -> tuple[DemoState, bool]:
    """The demo's state: the one kept in `data_dir`, or a new workspace, user and key.

    The second value tells whether it is new. A data dir with other data than
    the demo's, or with a demo stopped before its history was complete, is refused.
    """
    found = DemoState.load(data_dir)
    if found is not None:
        if not found.ready:
            raise DemoError(
                f"the demo in {data_dir} was stopped before its history was complete: "
                "remove that directory to start afresh"
            )
        return found, False
    if accounts.list_workspaces(database):
        raise DemoError(f"{data_dir} holds data that is not the demo's: pick another --data-dir")
    accounts.create_workspace(database, WORKSPACE)
    password = secrets.token_urlsafe(9)
    accounts.create_user(database, WORKSPACE, EMAIL, password)
    _, api_key = accounts.create_key(database, WORKSPACE, name="demo")
    state = DemoState(
        email=EMAIL,
        password=password,
        api_key=api_key,
        seed=secrets.randbelow(2**31),
        start=now - timedelta(days=days),
        end=now,
        incidents=Incidents.placed(now, days),
    )
    state.save(data_dir)
    return state, True

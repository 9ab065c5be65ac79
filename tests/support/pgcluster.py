"""Stop and start the PostgreSQL server the tests run on, to test a database outage.

The server is found from its own settings (`data_directory`); it is stopped and started again
with `pg_ctl` as the data directory's owner, with the command-line options it was started
with (`postmaster.opts`), so it comes back on the same port. Works on the throwaway cluster
of `scripts/ci-postgres.sh` (and `.ci/run`), which the test process can reach as its owner.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
from pathlib import Path

import sqlalchemy as sa


class PostgresServer:
    """The cluster behind an admin URL, with `stop()` and `start()`."""

    def __init__(self, admin_url: str) -> None:
        engine = sa.create_engine(admin_url)
        try:
            with engine.connect() as connection:
                data = connection.exec_driver_sql("SHOW data_directory").scalar_one()
                version = connection.exec_driver_sql("SHOW server_version_num").scalar_one()
        finally:
            engine.dispose()
        self.data_dir = Path(str(data))
        self.pg_ctl = Path(f"/usr/lib/postgresql/{int(str(version)) // 10000}/bin/pg_ctl")
        opts = shlex.split((self.data_dir / "postmaster.opts").read_text())
        self._options = shlex.join(_without_data_dir(opts[1:]))
        self._log = self.data_dir.parent / "server.log"

    def stop(self) -> None:
        self._pg_ctl("-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-D", str(self.data_dir), "-l", str(self._log), "-w", "-t", "30",
            "-o", self._options, "start",
        )  # fmt: skip

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.pg_ctl), *args]
        owner = self.data_dir.stat().st_uid
        if os.getuid() != owner:  # root runs it as the cluster's owner, as the script does
            command = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


def _without_data_dir(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-D":
            skip = True
        else:
            kept.append(arg)
    return kept

"""`edge-bridge …`: serve, import, token, demo, devices credentials, backup and restore.

The only place that configures logging and builds settings from the environment.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_bridge.config import Settings, load_settings, redact_url
from edge_bridge.errors import EdgeBridgeError, ImportFileError
from edge_bridge.limits import raise_open_file_limit
from edge_bridge.logs import configure_logging

logger = logging.getLogger("edge_ops.cli")


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from edge_bridge.tuning import GRACEFUL_SHUTDOWN_SECONDS

    logger.info(
        "Starting edge-bridge host=%s port=%s database=%s mqtt=%s",
        settings.host,
        settings.port,
        redact_url(settings.database_url),
        redact_url(settings.mqtt_url),
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
        proxy_headers=True,
    )
    # Thousands of long-lived streams make the cyclic GC walk the same objects over and over:
    # keep start-up objects out of its way and collect young objects less eagerly.
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    raise_open_file_limit()  # thousands of streams: each is a socket
    uvicorn.Server(config).run()
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from edge_bridge.db import make_engine, migrate
    from edge_ops.importer import import_file

    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        summary = import_file(engine, Path(args.file))
    except ImportFileError as exc:
        print(
            f"Import refused, nothing was changed ({len(exc.problems)} problems):", file=sys.stderr
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("Imported " + ", ".join(f"{v} {k}" for k, v in summary.model_dump().items()))
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    """A staff token of the staff member's own school, or (`--superadmin`) the operator's."""
    from sqlmodel import Session

    from edge_bridge.db import make_engine, migrate
    from edge_bridge.models import Staff
    from edge_bridge.tokens import issue_operator_token, issue_token

    ttl = args.ttl if args.ttl is not None else settings.jwt_access_ttl
    if args.superadmin:
        if args.admin:
            print("--admin is for a staff token; an operator token has no school", file=sys.stderr)
            return 2
        logger.info("Operator token issued ttl_s=%d", ttl)
        print(issue_operator_token(secret=settings.jwt_secret, ttl_seconds=ttl))
        return 0
    engine = make_engine(settings.database_url)
    migrate(engine)
    with Session(engine) as session:
        staff = session.get(Staff, args.staff)
    if staff is None:
        print(f"No staff member with id {args.staff}", file=sys.stderr)
        return 1
    token = issue_token(
        staff.id,
        school_id=staff.school_id,  # derived: a token is always of its staff member's school
        secret=settings.jwt_secret,
        ttl_seconds=ttl,
        admin=args.admin,
    )
    print(token)
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from edge_ops.demo import run_demo

    return run_demo(settings, args)


def _credentials(settings: Settings, args: argparse.Namespace) -> int:
    from sqlmodel import Session, select

    from edge_bridge.db import make_engine, migrate
    from edge_bridge.models import Device
    from edge_ops.credentials import provision, write_acl

    password_file = Path(args.password_file)
    ids = list(args.device_ids)
    if not ids:
        engine = make_engine(settings.database_url)
        migrate(engine)
        with Session(engine) as session:
            ids = sorted(session.exec(select(Device.id)).all())
    bridge = settings.mqtt.username or settings.mqtt_client_id
    bridges = list(dict.fromkeys([bridge, *args.bridge_user]))  # several instances: one user each
    provision(password_file, ids, credentials_file=Path(args.credentials_file))
    bridge_passwords = provision(password_file, bridges) if args.bridge else {}
    write_acl(
        password_file.with_name("acl"), prefix=settings.mqtt_topic_prefix, bridge_usernames=bridges
    )
    print(
        f"{len(ids)} reader password(s) written to {args.credentials_file} (mode 0600); "
        "send SIGHUP to mosquitto to load them"
    )
    endpoint = settings.mqtt
    for name, password in bridge_passwords.items():
        print(f"MQTT_URL=mqtt://{name}:{password}@{endpoint.host}:{endpoint.port}")
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from edge_ops.backup import backup_cli

    return backup_cli(settings, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the API and the MQTT bridge").set_defaults(run=_serve)
    importing = commands.add_parser("import", help="load an import file (idempotent)")
    importing.add_argument("file")
    importing.set_defaults(run=_import)
    token = commands.add_parser(
        "token", help="print an access JWT for a staff member (of their school) or the operator"
    )
    subject = token.add_mutually_exclusive_group(required=True)
    subject.add_argument("--staff", type=int, metavar="ID", help="a staff member's id")
    subject.add_argument(
        "--superadmin",
        action="store_true",
        help="the operator: lists schools and their health (GET /api/schools), no school's data",
    )
    token.add_argument("--ttl", type=int, help="seconds (default JWT_ACCESS_TTL)")
    token.add_argument("--admin", action="store_true", help="staff token with admin: true")
    token.set_defaults(run=_token)
    demo = commands.add_parser("demo", help="broker, bridge, demo data and simulator")
    demo.add_argument("--speed", type=float, default=1.0, help="simulated afternoon speed")
    demo.add_argument("--duration", type=float, default=300.0, help="simulated seconds")
    demo.add_argument("--rate", type=float, default=0.8, help="scans per second (wall clock)")
    demo.set_defaults(run=_demo)
    devices = commands.add_parser("devices", help="reader provisioning")
    device_commands = devices.add_subparsers(dest="devices_command", required=True)
    creds = device_commands.add_parser(
        "credentials", help="create or rotate reader passwords in the Mosquitto password file"
    )
    creds.add_argument("device_ids", nargs="*", help="default: every device in the database")
    creds.add_argument("--password-file", default="mosquitto/passwd")
    creds.add_argument("--credentials-file", default="data/reader-credentials.json")
    creds.add_argument("--bridge", action="store_true", help="also (re)set the bridge's password")
    creds.add_argument(
        "--bridge-user",
        action="append",
        default=[],
        metavar="NAME",
        help="another bridge instance's MQTT user (repeat per instance): ACL rights, and a "
        "password with --bridge",
    )
    creds.set_defaults(run=_credentials)
    backup = commands.add_parser("backup", help="online backup of the SQLite database")
    backup.add_argument("file")
    backup.set_defaults(run=_backup, backup_action="backup")
    restore = commands.add_parser("restore", help="restore the SQLite database from a backup")
    restore.add_argument("file")
    restore.set_defaults(run=_backup, backup_action="restore")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except EdgeBridgeError as exc:
        print(f"edge-bridge: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, instance_id=settings.instance)
    try:
        return int(args.run(settings, args))
    except EdgeBridgeError as exc:
        print(f"edge-bridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

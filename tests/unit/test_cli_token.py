"""`edge-bridge token`: a staff token is of the staff member's school, read from their row;
`--superadmin` prints the operator's token, which has no school."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings
from edge_bridge.tokens import decode_token
from edge_ops.cli import main
from tests.support.nord import import_nord


@pytest.fixture
def settings(
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """The fixture school (school 1) and Schule Nord (school 2) in the command's database."""
    import_nord(school_engine)
    built = settings_factory()
    monkeypatch.setenv("DATABASE_URL", built.database_url)
    monkeypatch.setenv("JWT_SECRET", built.jwt_secret)
    return built


def _claims(token: str, settings: Settings) -> dict[str, Any]:
    return jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])


def test_a_staff_token_is_of_the_school_of_the_staff_members_row(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    codes = [main(["token", "--staff", "201"]), main(["token", "--staff", "1"])]

    nord, fixture = capsys.readouterr().out.split()
    assert codes == [0, 0]
    assert (_claims(nord, settings)["sub"], _claims(nord, settings)["school"]) == ("201", "2")
    assert (_claims(fixture, settings)["sub"], _claims(fixture, settings)["school"]) == ("1", "1")
    assert decode_token(nord, secret=settings.jwt_secret).school_id == 2


def test_superadmin_prints_an_operator_token_of_no_school(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["token", "--superadmin", "--ttl", "120"])

    token = capsys.readouterr().out.strip()
    claims = _claims(token, settings)
    assert code == 0
    assert claims["role"] == "superadmin" and claims["sub"] == "operator"
    assert "school" not in claims and "admin" not in claims
    assert claims["exp"] - claims["iat"] == 120
    assert decode_token(token, secret=settings.jwt_secret).superadmin


def test_superadmin_without_ttl_lasts_jwt_access_ttl(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["token", "--superadmin"])

    claims = _claims(capsys.readouterr().out.strip(), settings)
    assert code == 0
    assert claims["exp"] - claims["iat"] == settings.jwt_access_ttl


@pytest.mark.parametrize(
    "argv",
    [
        ["token"],
        ["token", "--staff", "1", "--superadmin"],
    ],
    ids=["neither", "both"],
)
def test_token_takes_exactly_one_of_staff_and_superadmin(
    settings: Settings, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    output = capsys.readouterr()
    assert exited.value.code == 2
    assert output.out == ""
    assert "--staff" in output.err and "--superadmin" in output.err


def test_superadmin_with_admin_is_refused_and_prints_no_token(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["token", "--superadmin", "--admin"])

    output = capsys.readouterr()
    assert code == 2
    assert output.out == ""
    assert "--admin is for a staff token" in output.err

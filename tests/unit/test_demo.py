"""The demo's pure parts: the broker config it renders and the banner it prints."""

from __future__ import annotations

import json
from pathlib import Path

from edge_ops.demo.mosquitto import REPO_MOSQUITTO_DIR, render_config
from edge_ops.demo.runner import SCHOOL_FILE, DemoPaths, format_banner

FIXTURE = Path(__file__).parents[1] / "fixtures" / "school.json"


def test_the_rendered_broker_config_keeps_the_shipped_lines_and_moves_the_files() -> None:
    shipped = (REPO_MOSQUITTO_DIR / "mosquitto.conf").read_text(encoding="utf-8")

    rendered = render_config(
        shipped,
        {"listener": "18830 127.0.0.1", "password_file": "/demo/passwd", "user": "alice"},
    ).splitlines()

    listener = rendered.index("listener 18830 127.0.0.1")
    assert rendered[listener + 1 :].index("use_username_as_clientid true") >= 0
    assert "password_file /demo/passwd" in rendered
    assert "password_file /etc/mosquitto/passwd" not in rendered
    assert "user alice" in rendered
    assert "allow_anonymous false" in rendered
    assert "persistence true" in rendered


def test_a_directive_the_file_lacks_is_appended() -> None:
    rendered = render_config("# comment\nlistener 1883\n", {"log_dest": "stderr"})

    assert rendered == "# comment\nlistener 1883\nlog_dest stderr\n"


def test_the_packaged_demo_school_is_the_test_fixture() -> None:
    assert json.loads(SCHOOL_FILE.read_text()) == json.loads(FIXTURE.read_text())


def test_the_banner_shows_the_url_the_supervisor_logins_and_the_office_login(
    tmp_path: Path,
) -> None:
    school = json.loads(SCHOOL_FILE.read_text())
    paths = DemoPaths(tmp_path / "demo")

    text = format_banner(
        school, "http://127.0.0.1:8000", broker="127.0.0.1:1883", prefix="phoenix", paths=paths
    )

    assert "http://127.0.0.1:8000/" in text
    assert "schmidt@example.org / schmidt-demo-1" in text
    assert "yilmaz@example.org / yilmaz-demo-2" in text
    assert "Hausaufgaben (Raum 101)" in text
    assert "admin@example.org / admin-demo-4" in text
    assert text.index("yilmaz@example.org") < text.index("admin@example.org")  # office last

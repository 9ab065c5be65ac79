"""Two schools in one database, built so that a leak between them shows (issue 13).

School A (id 1) is the fixture school (tests/fixtures/school.json) plus a few records whose
ids interleave with school B's. School B (id 2, "Schule Nord") is built to be confused with
A: the same room, home-group, active-group and student names (and an admin and a
supervisor with A's staff names), card numbers A uses (for students and staff, crossing
kinds: one of A's student tags is a B staff tag), and ids in the gaps between A's. Only ids,
device ids, e-mails and a few B-only names tell the two apart. Ids, device ids and staff
e-mails are globally unique; tags are unique per school.

`leak_markers(own, other)` lists what a response to the staff of `own` must never contain:
the strings only `other` has (names, e-mails, device ids, tags) and the ids only `other`
uses (as JSON values of id fields). `find_leaks(value, markers)` walks a JSON value (or
text) and names each marker it finds.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.factories import school_document

SCHOOL_A_ID, SCHOOL_B_ID = 1, 2
Document = dict[str, Any]

# Markers shorter than this are left out: they would turn up inside unrelated words.
MIN_MARKER_LENGTH = 5
_ID_LIST_KEYS = frozenset({"subscribed_groups", "ogs_groups", "groups"})


@dataclass(frozen=True)
class Staffing:
    """Who at a school the tests act as, and what each one has (ids of the documents)."""

    school_id: int
    admin: int
    admin_email: str
    admin_password: str
    supervisor: int  # supervises `supervised_group`
    supervised_group: int
    supervisor_room_device: str  # an active reader in that group's room
    second_supervisor: int
    second_group: int
    second_device: str
    leader: int  # leads `led_ogs_group`
    led_ogs_group: int
    free_rooms: tuple[int, ...]  # rooms without a running group


SCHOOL_A = Staffing(
    school_id=SCHOOL_A_ID,
    admin=4,
    admin_email="admin@example.org",
    admin_password="admin-demo-4",
    supervisor=1,
    supervised_group=124,  # Hausaufgaben in room 1, reader-101
    supervisor_room_device="reader-101",
    second_supervisor=2,
    second_group=123,  # Fußball AG in room 2 (Turnhalle)
    second_device="reader-turnhalle",
    leader=3,
    led_ogs_group=7,
    free_rooms=(3, 13, 15),
)
SCHOOL_B = Staffing(
    school_id=SCHOOL_B_ID,
    admin=22,
    admin_email="admin@nord.example.org",
    admin_password="nord-admin-22",
    supervisor=24,
    supervised_group=132,  # Hausaufgaben in B's "Raum 101" (room 12), nord-101
    supervisor_room_device="nord-101",
    second_supervisor=26,
    second_group=122,  # Fußball AG in B's "Turnhalle" (room 14)
    second_device="nord-turnhalle",
    leader=28,
    led_ogs_group=32,
    free_rooms=(18,),
)

# A's records beside the fixture's, ids odd between B's even ones.
_A_EXTRA_STUDENTS = [
    ("Max", "Muster"),  # a second Max Muster, in A
    ("Emma", "Schulz"),
    ("Wiebke", "Ahlers"),
    ("Hauke", "Brinkmann"),
    ("Imke", "Sievers"),
    ("Jannes", "Oltmanns"),
    ("Fenja", "Harms"),
]
# B's students: the first ten share A's names, the last five are B's alone.
_B_STUDENTS = [
    ("Max", "Muster"),
    ("Emma", "Schulz"),
    ("Leon", "Neumann"),
    ("Mia", "Schneider"),
    ("Paul", "Hoffmann"),
    ("Hannah", "Schwarz"),
    ("Ben", "Fischer"),
    ("Sofia", "Koch"),
    ("Finn", "Zimmermann"),
    ("Lina", "Weber"),
    ("Yara", "Quistorp"),
    ("Ottokar", "Nordin"),
    ("Smilla", "Quandt"),
    ("Juri", "Vogelsang"),
    ("Thore", "Lüdemann"),
]
B_STUDENT_IDS = [502 + 2 * index for index in range(len(_B_STUDENTS))]  # 502, 504, …, 530
A_EXTRA_STUDENT_IDS = [501 + 2 * index for index in range(len(_A_EXTRA_STUDENTS))]
# Card numbers B reuses (B student or staff id → the A record's tag): same name and same tag,
# another name with A's tag, and one of A's student tags as a B staff tag.
B_REUSED_TAGS = {
    502: "04A1B20000",  # B Max Muster = A's Max Muster (401)
    504: "04A1B20001",  # B Emma Schulz = A's Emma Schulz (402)
    522: "04A1B20002",  # B Yara Quistorp = A's Leon Neumann (403)
    524: "04A1E00001",  # B Ottokar Nordin = A's extra Max Muster (501)
    24: "A1B2C3D4",  # B's Frau Schmidt = A's Frau Schmidt (1)
    26: "04A1B20003",  # B's Herr Nordmann = A's student Mia Schneider (404)
}
B_ONLY_NAMED = [522, 524, 526, 528, 530]  # Yara Quistorp … Thore Lüdemann


def school_a_document() -> Document:
    """School A: the fixture school (every fixture record unchanged) plus interleaved extras."""
    document = school_document()
    document["school"] = {"id": SCHOOL_A_ID, "name": "Schule Süd", "timezone": "Europe/Berlin"}
    document["rooms"] += [
        {"id": 11, "name": "Bibliothek"},
        {"id": 13, "name": "Werkraum"},
        {"id": 15, "name": "Raum 102"},
    ]
    document["staff"] += [
        {
            "id": 21,
            "name": "Frau Lindner",
            "email": "lindner@example.org",
            "password": "lindner-demo-21",
            "tag": "A1B2C3E1",
        },
        {"id": 23, "name": "Herr Brandt", "email": "brandt@example.org", "password": "brandt-23"},
    ]
    document["ogs_groups"] += [{"id": 31, "name": "Klasse 1a", "room_id": 11, "leader_ids": [23]}]
    document["students"] += [
        {
            "id": student_id,
            "first_name": first,
            "last_name": last,
            "tag": f"04A1E{index:05X}",
            "ogs_group_id": 31,
        }
        for index, (student_id, (first, last)) in enumerate(
            zip(A_EXTRA_STUDENT_IDS, _A_EXTRA_STUDENTS, strict=True), start=1
        )
    ]
    document["devices"] += [{"id": "reader-bibliothek", "room_id": 11, "active": True}]
    document["active_groups"] += [
        {"id": 131, "name": "Töpfern", "room_id": 11, "supervisor_ids": [21]}
    ]
    return document


def school_b_document() -> Document:
    """School B, "Schule Nord": names like A's, some of A's tags, ids between A's."""
    students = []
    for index, (student_id, (first, last)) in enumerate(
        zip(B_STUDENT_IDS, _B_STUDENTS, strict=True)
    ):
        students.append(
            {
                "id": student_id,
                "first_name": first,
                "last_name": last,
                "tag": B_REUSED_TAGS.get(student_id, f"04B0D0{index:04X}"),
                "ogs_group_id": 32 if index % 3 else 34,
            }
        )
    return {
        "school": {"id": SCHOOL_B_ID, "name": "Schule Nord", "timezone": "Europe/Berlin"},
        "rooms": [
            {"id": 12, "name": "Raum 101"},
            {"id": 14, "name": "Turnhalle"},
            {"id": 16, "name": "Mensa"},
            {"id": 18, "name": "Nordflügel"},
        ],
        "staff": [
            {
                "id": 22,
                "name": "Admin Büro",  # A's admin's name
                "email": SCHOOL_B.admin_email,
                "password": SCHOOL_B.admin_password,
                "admin": True,
            },
            {
                "id": 24,
                "name": "Frau Schmidt",  # A's staff 1's name and tag
                "email": "schmidt@nord.example.org",
                "password": "nord-schmidt-24",
                "tag": B_REUSED_TAGS[24],
            },
            {
                "id": 26,
                "name": "Herr Nordmann",
                "email": "nordmann@nord.example.org",
                "password": "nord-nordmann-26",
                "tag": B_REUSED_TAGS[26],
            },
            {
                "id": 28,
                "name": "Frau Quast",
                "email": "quast@nord.example.org",
                "password": "nord-quast-28",
                "tag": "B1C2D3E4",
            },
        ],
        "ogs_groups": [
            {"id": 32, "name": "Klasse 2b", "room_id": 12, "leader_ids": [28]},
            {"id": 34, "name": "Klasse 4n", "room_id": 16, "leader_ids": [26]},
        ],
        "students": students,
        "devices": [
            {"id": "nord-101", "room_id": 12, "active": True},
            {"id": "nord-turnhalle", "room_id": 14, "active": True},
            {"id": "nord-mensa", "room_id": 16, "active": True},
            {"id": "nord-spare", "room_id": 18, "active": False},
        ],
        "active_groups": [
            {"id": 122, "name": "Fußball AG", "room_id": 14, "supervisor_ids": [26]},
            {"id": 132, "name": "Hausaufgaben", "room_id": 12, "supervisor_ids": [24]},
            {"id": 134, "name": "Nordlicht-Theater", "room_id": 16, "supervisor_ids": [24, 26]},
        ],
    }


def two_schools() -> list[Document]:
    """Both documents, A first: what `make_system(documents=…)` imports."""
    return [school_a_document(), school_b_document()]


def without_school(document: Document) -> Document:
    """A copy without the `school` key (the single-school import path)."""
    copied = copy.deepcopy(document)
    copied.pop("school", None)
    return copied


# ---- what a document holds -------------------------------------------------------------


def ids_of(document: Document, section: str) -> set[int]:
    return {record["id"] for record in document.get(section, [])}


def student_tags(document: Document) -> dict[int, str]:
    """Student id → tag."""
    return {s["id"]: s["tag"] for s in document.get("students", []) if s.get("tag")}


def tag_of(document: Document, student_id: int) -> str:
    return student_tags(document)[student_id]


def display_name(document: Document, student_id: int) -> str:
    student = next(s for s in document["students"] if s["id"] == student_id)
    return f"{student['first_name']} {student['last_name']}"


def device_ids(document: Document) -> list[str]:
    return [device["id"] for device in document.get("devices", [])]


def all_ids(document: Document) -> set[int]:
    """Every numeric id of every kind."""
    sections = ("rooms", "staff", "ogs_groups", "students", "active_groups")
    return set().union(*(ids_of(document, section) for section in sections))


def _strings(document: Document) -> Iterator[str]:
    """Every text a school's records could show: names, e-mails, device ids, tags."""
    if school := document.get("school"):
        yield school["name"]
    for section in ("rooms", "ogs_groups", "active_groups"):
        for record in document.get(section, []):
            yield record["name"]
    for person in document.get("staff", []):
        yield person["name"]
        yield person["email"]
        if person.get("tag"):
            yield person["tag"]
    for child in document.get("students", []):
        yield child["first_name"]
        yield child["last_name"]
        yield f"{child['first_name']} {child['last_name']}"
        if child.get("tag"):
            yield child["tag"]
    yield from device_ids(document)


# ---- markers and leak search -----------------------------------------------------------


@dataclass(frozen=True)
class Markers:
    """What must not reach the other school: texts (substrings) and ids (in id fields)."""

    texts: frozenset[str]
    ids: frozenset[str]

    def without_ids(self, ids: Iterable[object]) -> Markers:
        """The same markers less some ids (records the own school created meanwhile)."""
        return Markers(self.texts, self.ids - {str(i) for i in ids})


def leak_markers(own: Iterable[Document], other: Iterable[Document]) -> Markers:
    """The strings and ids only `other` has: none of them may reach `own`'s staff.

    A text that also occurs inside one of `own`'s texts is not a marker ("Max" is in both
    "Max Muster"s), nor are shared names and tags; an id `own` uses for anything is not one.
    """
    own, other = list(own), list(other)
    own_texts = {text for document in own for text in _strings(document)}
    texts = {
        text
        for document in other
        for text in _strings(document)
        if len(text) >= MIN_MARKER_LENGTH and not any(text in mine for mine in own_texts)
    }
    own_ids = set().union(*(all_ids(document) for document in own))
    ids = set().union(*(all_ids(document) for document in other)) - own_ids
    return Markers(frozenset(texts), frozenset(str(i) for i in ids))


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith(("_id", "_ids")) or key in _ID_LIST_KEYS


def _scalar_ids(value: Any) -> Iterator[str]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str | int):
        yield str(value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str | int) and not isinstance(item, bool):
                yield str(item)
    elif isinstance(value, dict):  # `/api/sse/stats` "groups": {id: count}
        yield from (str(key) for key in value)


def find_leaks(value: Any, markers: Markers, *, where: str = "$") -> list[str]:
    """Each marker found in a JSON value (or a text), with where: `$.rooms[3].name: 'X'`."""
    found: list[str] = []
    if isinstance(value, str):
        found += [f"{where}: text {text!r}" for text in sorted(markers.texts) if text in value]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += find_leaks(item, markers, where=f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += find_leaks(str(key), markers, where=f"{where}.<key>")
            if _is_id_key(str(key)):
                found += [
                    f"{where}.{key}: id {ident}"
                    for ident in _scalar_ids(item)
                    if ident in markers.ids
                ]
            found += find_leaks(item, markers, where=f"{where}.{key}")
    return found


def word_pattern(value: object) -> re.Pattern[str]:
    """A number or name as a whole word (so "12" does not match inside "124")."""
    return re.compile(rf"(?<![\w-]){re.escape(str(value))}(?![\w-])")

"""An afternoon as a plan: who taps which reader when, and what the bridge must answer.

Pure and deterministic: `random.Random(seed)`, no clock, no sockets. `PresenceModel` is the
simulator's own copy of the scan rules (CONTRACT §3) and of who is where; `build_plan` walks
every card holder through the afternoon and asks the model for each scan's expected result.

Timing is chosen so that the expected result cannot depend on races:
- scans of one card are at least `debounce + 2 s` apart (scan `ts`), except a double tap,
  which follows its first tap by 0.2–0.9 s on the same reader and so must be a `duplicate`;
- no double taps of unknown cards or in rooms without an active group, where the rule order
  (unknown tag, then no active group, then duplicate) would be the only thing deciding;
- the runner sends a card's next scan only once the previous one is acknowledged, so the
  bridge sees each card's scans in the order they were read, also when a reader was offline.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from edge_bridge.wire import ScanResult
from simulator.data import Card, DeviceInfo, SimData

ACCEPTED_RESULTS = frozenset(
    {
        ScanResult.CHECKED_IN,
        ScanResult.CHECKED_OUT,
        ScanResult.TRANSFERRED,
        ScanResult.SUPERVISOR_AUTHENTICATED,
    }
)
_SPACING_MARGIN_SECONDS = 2.0
_DOUBLE_TAP_GAP_SECONDS = (0.2, 0.9)


class ScenarioError(ValueError):
    """The data or options do not allow a plan."""


class ScanKind(StrEnum):
    """Why a scan happens in the afternoon."""

    ARRIVAL = "arrival"
    MOVE = "move"
    CLOSED_ROOM = "closed_room"
    DEPARTURE = "departure"
    DOUBLE_TAP = "double_tap"
    STAFF = "staff"
    UNKNOWN_CARD = "unknown_card"


@dataclass(frozen=True)
class ModelStay:
    """One visit as the model sees it: a room, from a read time until another (or open)."""

    room_id: str
    entered_at_seconds: float
    left_at_seconds: float | None = None


class PresenceModel:
    """Who is where, and the result the bridge must give for the next scan (CONTRACT §3)."""

    def __init__(
        self,
        *,
        devices: Mapping[str, DeviceInfo],
        active_groups: Mapping[str, str],
        cards: Mapping[str, Card],
        debounce_seconds: float = 3.0,
        present: Mapping[str, str] | None = None,
    ) -> None:
        self._devices = devices
        self._active_groups = active_groups
        self._cards = cards
        self._debounce_seconds = debounce_seconds
        self._present: dict[str, str] = dict(present or {})
        self._last_accepted: dict[tuple[str, str], float] = {}
        self._stays: dict[str, list[ModelStay]] = {}

    @classmethod
    def from_data(
        cls,
        data: SimData,
        *,
        debounce_seconds: float = 3.0,
        present: Mapping[str, str] | None = None,
    ) -> PresenceModel:
        cards = {c.tag: c for c in (*data.students, *data.staff)}
        return cls(
            devices={d.id: d for d in data.devices},
            active_groups=data.active_groups,
            cards=cards,
            debounce_seconds=debounce_seconds,
            present=present,
        )

    @property
    def present(self) -> dict[str, str]:
        """student id → room id of every student with an open visit."""
        return dict(self._present)

    def room_of(self, student_id: str) -> str | None:
        return self._present.get(student_id)

    @property
    def stays(self) -> dict[str, tuple[ModelStay, ...]]:
        """student id → the stays the model's scans opened, in order (the attendance record)."""
        return {student: tuple(stays) for student, stays in self._stays.items()}

    def _move(self, student_id: str, room_id: str | None, at_seconds: float) -> None:
        stays = self._stays.setdefault(student_id, [])
        if stays and stays[-1].left_at_seconds is None:
            stays[-1] = replace(stays[-1], left_at_seconds=at_seconds)
        if room_id is not None:
            stays.append(ModelStay(room_id, at_seconds))

    def expect(self, device_id: str, tag: str, at_seconds: float) -> ScanResult:
        """Apply one scan read at `at_seconds` and return the result the bridge must send."""
        device = self._devices.get(device_id)
        if device is None:
            msg = f"device {device_id!r} is not in the data"
            raise ScenarioError(msg)
        if not device.active:
            return ScanResult.REJECTED
        card = self._cards.get(tag)
        if card is None:
            return ScanResult.UNKNOWN_TAG
        room_id = device.room_id
        if room_id not in self._active_groups:
            return ScanResult.NO_ACTIVE_GROUP
        last = self._last_accepted.get((device_id, tag))
        if last is not None and at_seconds - last < self._debounce_seconds:
            return ScanResult.DUPLICATE
        self._last_accepted[(device_id, tag)] = at_seconds
        if card.is_staff:
            return ScanResult.SUPERVISOR_AUTHENTICATED
        current = self._present.get(card.person_id)
        self._present[card.person_id] = room_id
        if current == room_id:
            del self._present[card.person_id]
            self._move(card.person_id, None, at_seconds)
            return ScanResult.CHECKED_OUT
        self._move(card.person_id, room_id, at_seconds)
        return ScanResult.CHECKED_IN if current is None else ScanResult.TRANSFERRED


@dataclass(frozen=True)
class PlanOptions:
    """Knobs of an afternoon; times are scenario seconds from its start."""

    devices: int = 4
    students: int = 20
    duration_seconds: float = 300.0
    rate: float | None = None  # scans per second overall; None: about four scans per student
    seed: int = 0
    debounce_seconds: float = 3.0
    flaky: float = 0.0  # probability per scan that its reader drops off just before it
    offline_seconds: tuple[float, float] = (2.0, 8.0)
    leave_probability: float = 0.8
    double_tap_probability: float = 0.1
    closed_room_probability: float = 0.15
    unknown_card_share: float = 0.04


@dataclass(frozen=True)
class PlannedScan:
    """One card read: where, when, by whom, and the result the bridge must answer."""

    at_seconds: float
    device_id: str
    tag: str = field(repr=False)
    subject: str  # who holds the card: "student:456", "staff:1", "unknown:3"
    kind: ScanKind
    expected: ScanResult
    student_id: str | None = None
    chained: bool = False  # a double tap: sent right after the subject's previous scan


@dataclass(frozen=True)
class OfflineWindow:
    """A reader's connection is cut from `start_seconds` until `end_seconds`."""

    device_id: str
    start_seconds: float
    end_seconds: float


@dataclass(frozen=True)
class Plan:
    """A whole afternoon, ready to be played by `simulator.afternoon`."""

    options: PlanOptions
    devices: tuple[DeviceInfo, ...]
    scans: tuple[PlannedScan, ...]
    offline: tuple[OfflineWindow, ...]
    present: Mapping[str, str]  # the model at the end: student id → room id
    stays: Mapping[str, tuple[ModelStay, ...]] = field(default_factory=dict)  # per student

    def expected_counts(self) -> Counter[str]:
        return Counter(str(s.expected) for s in self.scans)


def build_plan(
    data: SimData, options: PlanOptions, *, present: Mapping[str, str] | None = None
) -> Plan:
    """Plan an afternoon for the first `options.devices` active devices and the first
    `options.students` students of `data`; `present` is who is already checked in."""
    devices = tuple(d for d in data.devices if d.active)[: options.devices]
    if not devices:
        msg = "no active devices in the data"
        raise ScenarioError(msg)
    if options.duration_seconds <= 0:
        msg = f"duration must be positive, got: {options.duration_seconds}"
        raise ScenarioError(msg)
    builder = _PlanBuilder(data, options, devices, present)
    builder.add_staff()
    builder.add_students()
    builder.add_unknown_cards()
    scans = builder.sorted_scans()
    return Plan(
        options=options,
        devices=devices,
        scans=scans,
        offline=_offline_windows(scans, options),
        present=builder.model.present,
        stays=builder.model.stays,
    )


class _PlanBuilder:
    def __init__(
        self,
        data: SimData,
        options: PlanOptions,
        devices: tuple[DeviceInfo, ...],
        present: Mapping[str, str] | None,
    ) -> None:
        self.rng = random.Random(options.seed)
        self.options = options
        self.data = data
        self.model = PresenceModel.from_data(
            data, debounce_seconds=options.debounce_seconds, present=present
        )
        self.open = [d for d in devices if d.room_id in data.active_groups]
        self.closed = [d for d in devices if d.room_id not in data.active_groups]
        self.all = list(devices)
        self.gap = options.debounce_seconds + _SPACING_MARGIN_SECONDS
        self.end = options.duration_seconds
        self.scans: list[PlannedScan] = []

    def tap(self, device: DeviceInfo, card: Card, at: float, kind: ScanKind, subject: str) -> None:
        """Plan one tap (and perhaps a double tap right after it)."""
        student_id = None if card.is_staff else card.person_id
        expected = self.model.expect(device.id, card.tag, at)
        self.scans.append(PlannedScan(at, device.id, card.tag, subject, kind, expected, student_id))
        if expected in ACCEPTED_RESULTS and self.rng.random() < self.options.double_tap_probability:
            again = at + self.rng.uniform(*_DOUBLE_TAP_GAP_SECONDS)
            result = self.model.expect(device.id, card.tag, again)
            self.scans.append(
                PlannedScan(
                    again,
                    device.id,
                    card.tag,
                    subject,
                    ScanKind.DOUBLE_TAP,
                    result,
                    student_id,
                    chained=True,
                )
            )

    def add_staff(self) -> None:
        """Staff authenticate in each room with an active group early on; one tries a room
        without one."""
        staff = list(self.data.staff)
        if not staff:
            return
        next_free: dict[str, float] = {}
        rooms = list(dict.fromkeys(d.room_id for d in self.open))
        visits = [(room, self.rng.uniform(0.0, 0.1) * self.end) for room in rooms]
        if self.closed:
            visits.append(("", self.rng.uniform(0.3, 0.6) * self.end))
        for i, (room, wanted) in enumerate(visits):
            card = staff[i % len(staff)]
            at = max(wanted, next_free.get(card.tag, 0.0))
            if at >= self.end:
                continue
            if room:
                device = self.rng.choice([d for d in self.open if d.room_id == room])
            else:
                device = self.rng.choice(self.closed)
            self.tap(device, card, at, ScanKind.STAFF, f"staff:{card.person_id}")
            next_free[card.tag] = at + self.gap

    def add_students(self) -> None:
        students = list(self.data.students[: self.options.students])
        moves = self._moves_per_student(len(students))
        for card, move_count in zip(students, moves, strict=True):
            self._walk(card, move_count)

    def _moves_per_student(self, count: int) -> list[int]:
        if count == 0:
            return []
        base = 1 + self.options.leave_probability
        if self.options.rate is None:
            total = 2 * count
        else:
            wanted = self.options.rate * self.end / (1 + self.options.double_tap_probability)
            total = max(0, round(wanted - len(self.scans) - base * count))
        moves = [0] * count
        for _ in range(total):
            moves[self.rng.randrange(count)] += 1
        return moves

    def _walk(self, card: Card, move_count: int) -> None:
        """Arrive, move between rooms, perhaps leave."""
        rng, gap, end = self.rng, self.gap, self.end
        subject = f"student:{card.person_id}"
        arrive = rng.uniform(0.02, 0.35) * end
        leaves = rng.random() < self.options.leave_probability
        leave = rng.uniform(0.65, 0.97) * end if leaves else end
        # move_count times in (arrive, leave), each at least `gap` after the one before
        move_count = max(0, min(move_count, int((leave - arrive) / gap) - 1))
        slack = leave - arrive - (move_count + 1) * gap
        offsets = sorted(rng.uniform(0.0, slack) for _ in range(move_count))
        times = [arrive + gap * (i + 1) + u for i, u in enumerate(offsets)]
        if not self.open:
            if self.closed:
                self.tap(rng.choice(self.closed), card, arrive, ScanKind.CLOSED_ROOM, subject)
            return
        self.tap(rng.choice(self.open), card, arrive, ScanKind.ARRIVAL, subject)
        for t in times:
            if self.closed and rng.random() < self.options.closed_room_probability:
                self.tap(rng.choice(self.closed), card, t, ScanKind.CLOSED_ROOM, subject)
                continue
            here = self.model.room_of(card.person_id)
            choices = [d for d in self.open if d.room_id != here] or self.open
            self.tap(rng.choice(choices), card, t, ScanKind.MOVE, subject)
        last = times[-1] if times else arrive
        here = self.model.room_of(card.person_id)
        exits = [d for d in self.open if d.room_id == here]
        if leaves and exits and leave - last >= gap:
            self.tap(rng.choice(exits), card, leave, ScanKind.DEPARTURE, subject)

    def add_unknown_cards(self) -> None:
        known = {c.tag for c in (*self.data.students, *self.data.staff)}
        count = max(1, round(self.options.unknown_card_share * len(self.scans)))
        for i in range(count):
            tag = ""
            while not tag or tag in known:
                tag = "".join(self.rng.choice("0123456789ABCDEF") for _ in range(10))
            known.add(tag)
            card = Card(tag=tag, person_id="", name="", first_name="")
            at = self.rng.uniform(0.0, 0.99) * self.end
            # Readers in rooms with an active group only: elsewhere `no_active_group` and
            # `unknown_tag` would both fit, and only the bridge's rule order would decide.
            device = self.rng.choice(self.open or self.all)
            self.tap(device, card, at, ScanKind.UNKNOWN_CARD, f"unknown:{i}")

    def sorted_scans(self) -> tuple[PlannedScan, ...]:
        order = sorted(range(len(self.scans)), key=lambda i: (self.scans[i].at_seconds, i))
        return tuple(self.scans[i] for i in order)


def _offline_windows(
    scans: tuple[PlannedScan, ...], options: PlanOptions
) -> tuple[OfflineWindow, ...]:
    """With probability `flaky` per scan, its reader drops off shortly before it."""
    if options.flaky <= 0:
        return ()
    rng = random.Random(f"{options.seed}:flaky")
    busy_until: dict[str, float] = {}
    windows: list[OfflineWindow] = []
    for scan in scans:
        if rng.random() >= options.flaky:
            continue
        start = max(0.0, scan.at_seconds - rng.uniform(0.05, 1.0))
        if start < busy_until.get(scan.device_id, -1.0):
            continue
        end = scan.at_seconds + rng.uniform(*options.offline_seconds)
        windows.append(OfflineWindow(scan.device_id, start, end))
        busy_until[scan.device_id] = end + 0.5
    return tuple(windows)

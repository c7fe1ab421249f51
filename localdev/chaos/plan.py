"""The chaos run's plan: which file versions are uploaded when, and when the stack is hurt.

Pure and seeded: the same seed and sizes give the same plan, byte for byte. (The run itself meets real
processes and clocks, so the interleaving differs between runs; what each version must end as does not.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from localdev.procs import REPO_ROOT

DEMO_CSV = REPO_ROOT / "localdev" / "demo" / "diamonds.csv"
#: Inputs whose name holds this are failed by the batch endpoint emulator (its `fail_match` fault).
FAIL_MARK = "aml-fail"
#: The demo model's columns; the chaos stack requires them, so a file without one is rejected before compute.
REQUIRED_COLUMNS = ("carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z")


class Kind(StrEnum):
    """What a file version holds, and so what the app must make of it."""

    VALID = "valid"
    FAILING = FAIL_MARK  # a valid CSV the emulator's Azure ML job fails
    WRONG_DELIMITER = "semicolons"
    HEADER_ONLY = "header-only"
    EMPTY = "empty"  # 0 bytes
    NOT_UTF8 = "latin-1"
    RAGGED = "ragged"
    DUPLICATE_COLUMNS = "dup-columns"
    MISSING_COLUMN = "no-carat"
    NOT_CSV = "not-csv"  # a valid CSV under a .txt name


#: The rejection code the README documents for each invalid kind.
REJECTION_CODE: dict[Kind, str] = {
    Kind.WRONG_DELIMITER: "WrongDelimiter",
    Kind.HEADER_ONLY: "HeaderOnly",
    Kind.EMPTY: "Empty",
    Kind.NOT_UTF8: "NotUtf8",
    Kind.RAGGED: "RaggedRows",
    Kind.DUPLICATE_COLUMNS: "DuplicateColumns",
    Kind.MISSING_COLUMN: "MissingColumns",
    Kind.NOT_CSV: "NotCsv",
}
INVALID_KINDS = tuple(REJECTION_CODE)


class Overwrite(StrEnum):
    """When a version replaces the one before it under the same name."""

    EARLY = "early"  # a moment after the version it replaces: mostly before the app has validated it
    IN_FLIGHT = "in-flight"  # once the ledger shows the replaced version's job Submitted or Running


@dataclass(frozen=True)
class Upload:
    number: int  # 1-based; the table's first column
    name: str
    kind: Kind
    at: float  # seconds after the workload starts
    first_row: int  # rows of the demo CSV it carries: [first_row, first_row + rows)
    rows: int
    replaces: int | None = None  # the number of the version of the same name it overwrites
    overwrite: Overwrite | None = None


class Action(StrEnum):
    KILL_HOST = "kill -9 the functions host"
    START_HOST = "start the functions host again"
    STOP_TOPIC = "stop the Event Grid topic"
    START_TOPIC = "start the Event Grid topic again"
    RESTART_AZURITE = "restart Azurite"


@dataclass(frozen=True)
class Step:
    at: float
    action: Action


@dataclass(frozen=True)
class ChaosPlan:
    seed: int
    uploads: tuple[Upload, ...]
    steps: tuple[Step, ...]
    faults: str

    def timeline(self) -> list[Upload | Step]:
        """Everything in the order it is due (an upload before a step due at the same moment)."""
        items: list[Upload | Step] = [*self.uploads, *self.steps]
        return sorted(items, key=lambda item: (item.at, isinstance(item, Step)))

    @property
    def kills(self) -> int:
        return sum(1 for step in self.steps if step.action is Action.KILL_HOST)


def fault_spec(seed: int) -> str:
    """Batch endpoint faults on invoke and on status calls. The `*_first` ones make sure even a short
    run meets each kind once; the fractions spread more over a long one (seeded: the same requests
    meet the same faults)."""
    return ",".join(
        [
            f"seed={seed}",
            "invoke_500_after_create_first=1",
            "invoke_drop_after_create_first=1",
            "status_429_first=1",
            "status_503_first=1",
            "invoke_429=0.05",
            "invoke_500=0.05",
            "invoke_500_after_create=0.05",
            "invoke_drop_after_create=0.05",
            "status_429=0.1",
            "status_503=0.1",
            "retry_after=1",
            f"fail_match={FAIL_MARK}",
        ]
    )


# What the first versions are, so that even a short run has one of each thing the brief asks for.
_OPENING = ("valid-nested", "early", "valid-spaces", "in-flight", "invalid", "failing")
_WEIGHTS = {"valid": 40, "failing": 8, "invalid": 24, "early": 12, "in-flight": 16}


def make_plan(
    *,
    seed: int,
    files: int,
    kills: int,
    topic_down_seconds: float,
    azurite_restart: bool,
    spacing: float = 0.6,
    faults: str | None = None,
) -> ChaosPlan:
    """`files` versions about `spacing` seconds apart, `kills` kills of the dev host over the uploads and
    the work after them, the topic down for `topic_down_seconds`, Azurite restarted once if asked;
    `faults` is the batch endpoint's fault spec (default: `fault_spec(seed)`)."""
    if files < 1 or kills < 0 or spacing <= 0 or topic_down_seconds < 0:
        raise ValueError("need files >= 1, kills >= 0, spacing > 0, topic_down_seconds >= 0")
    rng = random.Random(seed)  # noqa: S311 - a reproducible test plan, not security
    uploads: list[Upload] = []
    offset = rng.randrange(len(INVALID_KINDS))
    for number in range(1, files + 1):
        choice = _OPENING[number - 1] if number <= len(_OPENING) else _draw(rng)
        base = (number - 1) * spacing + rng.uniform(0, spacing / 2)
        uploads.append(_next_upload(rng, uploads, number=number, choice=choice, base=base, seed_offset=offset))
    end = max(upload.at for upload in uploads)
    steps = _steps(rng, end, kills, topic_down_seconds, azurite_restart)
    return ChaosPlan(seed, tuple(uploads), tuple(steps), fault_spec(seed) if faults is None else faults)


def _draw(rng: random.Random) -> str:
    return rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]


def _next_upload(
    rng: random.Random, earlier: list[Upload], *, number: int, choice: str, base: float, seed_offset: int
) -> Upload:
    first_row, rows = rng.randrange(0, 250), rng.randint(3, 40)
    latest = _latest_versions(earlier)
    if choice == "early" and earlier and _replaceable(latest[earlier[-1].name]) and earlier[-1].overwrite is None:
        # Right behind the version it replaces, before the app has had time to validate that one.
        target = earlier[-1]
        at = target.at + rng.uniform(0.05, 0.4)
        return Upload(number, target.name, Kind.VALID, at, first_row, rows, target.number, Overwrite.EARLY)
    in_flight_targets = [upload for upload in latest.values() if upload.kind in {Kind.VALID, Kind.FAILING}]
    if choice == "in-flight" and in_flight_targets:
        target = max(in_flight_targets, key=lambda upload: upload.number)  # the newest: its job is young
        at = max(base, target.at + 0.5)
        # A job Azure ML fails, overwritten by a header-only file: issue 10's reproduction of a filing that
        # was recorded but never happened. Any other in-flight job is overwritten by another valid CSV.
        kind = Kind.HEADER_ONLY if target.kind is Kind.FAILING else Kind.VALID
        return Upload(number, target.name, kind, at, first_row, rows, target.number, Overwrite.IN_FLIGHT)
    # Invalid kinds take turns (from a seeded start), so a run with eight invalid files has one of each.
    invalid = sum(1 for upload in earlier if upload.kind in REJECTION_CODE) + seed_offset
    kind = {"failing": Kind.FAILING, "invalid": INVALID_KINDS[invalid % len(INVALID_KINDS)]}.get(choice, Kind.VALID)
    style = {"valid-nested": 1, "valid-spaces": 2}.get(choice, rng.randrange(3))
    return Upload(number, _name(number, kind, style), kind, base, first_row, rows)


def _latest_versions(uploads: list[Upload]) -> dict[str, Upload]:
    return {upload.name: upload for upload in uploads}


def _replaceable(upload: Upload) -> bool:
    """A version whose name still means the same kind after a valid CSV replaces it (a .txt name is refused,
    a name with FAIL_MARK is failed by Azure ML, whatever the file holds)."""
    return upload.kind is not Kind.NOT_CSV and FAIL_MARK not in upload.name


def _name(number: int, kind: Kind, style: int) -> str:
    suffix = ".txt" if kind is Kind.NOT_CSV else ".csv"
    if style == 1:
        return f"deep/a{number % 3}/b/c{number:03d}-{kind}{suffix}"
    if style == 2:
        return f"with spaces/c{number:03d} {kind}{suffix}"
    return f"c{number:03d}-{kind}{suffix}"


def _steps(rng: random.Random, end: float, kills: int, topic_down: float, azurite_restart: bool) -> list[Step]:
    steps: list[Step] = []
    # Kills spread over the uploads and the processing after them, one in each slot, at a random moment;
    # the host comes back before the next kill.
    slot = (end + 8.0) / max(kills, 1)
    kill_times = [1.0 + index * slot + rng.uniform(0, slot * 0.8) for index in range(kills)]
    for at, next_at in zip(kill_times, [*kill_times[1:], float("inf")], strict=True):
        down = rng.uniform(0.2, max(0.3, min(2.5, next_at - at - 0.5)))
        steps += [Step(at, Action.KILL_HOST), Step(at + down, Action.START_HOST)]
    if topic_down > 0:
        at = rng.uniform(0.25, 0.5) * end + 0.5
        steps += [Step(at, Action.STOP_TOPIC), Step(at + topic_down, Action.START_TOPIC)]
    if azurite_restart:
        steps.append(Step(rng.uniform(0.4, 0.8) * end + 1.0, Action.RESTART_AZURITE))
    return sorted(steps, key=lambda step: step.at)


def content(upload: Upload) -> bytes:
    """The bytes of a version: rows of the demo CSV, spoiled the way its kind says."""
    lines = DEMO_CSV.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1 + upload.first_row : 1 + upload.first_row + upload.rows]
    kind = upload.kind
    if kind is Kind.EMPTY:
        return b""
    if kind is Kind.HEADER_ONLY:
        return f"{header}\n".encode()
    if kind is Kind.WRONG_DELIMITER:
        header, rows = header.replace(",", ";"), [row.replace(",", ";") for row in rows]
    elif kind is Kind.RAGGED:
        rows = [*rows[:1], rows[1] + ",1", *rows[2:]]
    elif kind is Kind.DUPLICATE_COLUMNS:
        header = header.replace("depth", "carat")
    elif kind is Kind.MISSING_COLUMN:
        header, rows = header.split(",", 1)[1], [row.split(",", 1)[1] for row in rows]
    text = "\n".join([header, *rows]) + "\n"
    if kind is Kind.NOT_UTF8:  # one cell in Latin-1, as a spreadsheet saving "Très bon" would write it
        cells = rows[0].split(",")
        rows = [",".join([cells[0], "Très bon", *cells[2:]]), *rows[1:]]
        return ("\n".join([header, *rows]) + "\n").encode("latin-1")
    return text.encode()

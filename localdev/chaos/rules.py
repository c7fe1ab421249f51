"""What each file version must end as: the app's documented rules applied to what happened to it.

The rules come from the README ("The flow", "The event contract", "Known limitations") and the state
diagram in docs/architecture.md. A version nobody replaced has exactly one right outcome. A version
replaced by a later upload under the same name has the outcomes those documents give for each moment
the replacement can land at, and no other: never "anything".
"""

from __future__ import annotations

from dataclasses import dataclass

from localdev.batch_endpoint.faults import DEFAULT_FAIL_MESSAGE
from localdev.chaos.plan import REJECTION_CODE, Kind

#: A version that was the current blob this long, with the dev host and Azurite up, must have been seen
#: (the host scans the input container every second; its four blob slots can be busy for a few seconds).
UNSEEN_LIMIT_SECONDS = 10.0
#: Why a replaced version's input can be left where it was (README, "Where the input went").
REPLACED_NOT_MOVED = frozenset({"overwritten", "gone", "changed-while-moving"})
#: The message of the emulator's "input does not exist" failure (localdev/batch_endpoint/jobs.py).
INPUT_MISSING_IN_AZURE_ML = "does not exist or is not accessible"


@dataclass(frozen=True)
class Containers:
    archive: str
    failed: str
    rejected: str


@dataclass(frozen=True)
class Outcome:
    """What a version ended as, from its ledger row; `state` None: the app has no row for it."""

    state: str | None
    code: str = ""
    moved_to: str = ""
    not_moved: str = ""
    message: str = ""

    def describe(self) -> str:
        if self.state is None:
            return "unseen"
        where = f"->{self.moved_to}" if self.moved_to else f"~{self.not_moved}" if self.not_moved else "(not filed)"
        code = "" if self.state == "Completed" else self.code  # a Completed job's code is a retried invoke's
        return " ".join(part for part in (self.state, code, where) if part)


@dataclass(frozen=True)
class Allowed:
    """One outcome the rules allow, and why. `codes` None: the error code is not part of the outcome (a
    Completed job may keep the code of an invoke that was retried). `moved_to` empty: the input must not
    have been moved, and the reason recorded must be one of `not_moved`."""

    state: str | None
    why: str
    codes: frozenset[str] | None = None
    moved_to: str = ""
    not_moved: frozenset[str] = frozenset()
    message_has: str = ""

    def admits(self, outcome: Outcome) -> bool:
        if outcome.state != self.state:
            return False
        if self.state is None:
            return True
        if self.codes is not None and outcome.code not in self.codes:
            return False
        if self.message_has and self.message_has not in outcome.message:
            return False
        if outcome.moved_to:
            return outcome.moved_to == self.moved_to
        return outcome.not_moved in self.not_moved

    def describe(self) -> str:
        if self.state is None:
            return "unseen"
        codes = "|".join(sorted(self.codes or ()))
        # "~replaced": left in place for any of the reasons a newer upload of the name gives (REPLACED_NOT_MOVED).
        reasons = ["replaced"] if self.not_moved == REPLACED_NOT_MOVED else sorted(self.not_moved)
        places = ([f"->{self.moved_to}"] if self.moved_to else []) + [f"~{reason}" for reason in reasons]
        return " ".join(part for part in (self.state, codes, "|".join(places)) if part)


@dataclass(frozen=True)
class VersionFacts:
    kind: Kind
    replaced: bool  # a later upload under the same name exists
    visible_seconds: float = 0.0  # replaced only: how long it was current while the host and Azurite ran


def own_outcome(kind: Kind, containers: Containers) -> Allowed:
    """The one right outcome of a version nobody replaced."""
    if kind is Kind.VALID:
        return Allowed("Completed", "scored, joined and archived", moved_to=containers.archive)
    if kind is Kind.FAILING:
        why = "Azure ML failed the job (emulator fault): Failed with Azure ML's code, input filed in failed"
        return Allowed(
            "Failed", why, frozenset({"UserError"}), moved_to=containers.failed, message_has=DEFAULT_FAIL_MESSAGE
        )
    code = REJECTION_CODE[kind]
    return Allowed("Rejected", f"invalid input: {code}", frozenset({code}), moved_to=containers.rejected)


def expectations(facts: VersionFacts, containers: Containers) -> tuple[Allowed, ...]:
    own = own_outcome(facts.kind, containers)
    if not facts.replaced:
        return (own,)
    allowed: list[Allowed] = []
    if facts.visible_seconds < UNSEEN_LIMIT_SECONDS:
        why = "replaced before the dev host's container scan saw it (a scan sees only the current version)"
        allowed.append(Allowed(None, why))
    if facts.kind not in {Kind.EMPTY, Kind.NOT_CSV}:  # those two are refused before anything is read
        allowed += [
            Allowed(
                "Canceled",
                "replaced before it was validated (Received -> Canceled)",
                frozenset({"BlobChanged"}),
                not_moved=frozenset({"overwritten"}),
            ),
            Allowed(
                "Canceled",
                "replaced, and the replacement filed, before it was validated",
                frozenset({"BlobMissing"}),
                not_moved=frozenset({"gone"}),
            ),
        ]
    replaced_after = "validated" if own.state == "Rejected" else "joined"
    allowed.append(
        Allowed(
            own.state,
            f"{replaced_after} before it was replaced; filed, or left alone once replaced",
            own.codes,
            moved_to=own.moved_to,
            not_moved=REPLACED_NOT_MOVED,
            message_has=own.message_has,
        )
    )
    if facts.kind in {Kind.VALID, Kind.FAILING}:  # submitted: Azure ML may find the input gone
        allowed.append(
            Allowed(
                "Failed",
                "replaced, and the replacement filed, before Azure ML read it (Azure ML: input does not exist)",
                frozenset({"UserError"}),
                not_moved=REPLACED_NOT_MOVED,
                message_has=INPUT_MISSING_IN_AZURE_ML,
            )
        )
    if facts.kind is Kind.VALID:
        allowed += [
            Allowed(
                "Failed",
                "replaced after it was submitted, before its predictions were joined (README, Known limitations)",
                frozenset({"BlobChanged"}),
                not_moved=frozenset({"overwritten"}),
            ),
            Allowed(
                "Failed",
                "replaced, and the replacement filed, before its predictions were joined",
                frozenset({"BlobMissing"}),
                not_moved=frozenset({"gone"}),
            ),
        ]
    return tuple(allowed)


def judge(allowed: tuple[Allowed, ...], outcome: Outcome) -> Allowed | None:
    """The rule the outcome satisfies, or None when it satisfies none."""
    return next((rule for rule in allowed if rule.admits(outcome)), None)

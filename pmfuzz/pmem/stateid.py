"""A crash state's printed identity: its crash point and the in-flight groups that deviate from "all kept".

    StateId.parse("F14:L3=1,L7=0")  ->  StateId("F14", (("L3", "1"), ("L7", "0")))

Reproducers, findings.json and reports carry the text form; code passes the value, so no
module splits the text by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PMemError

__all__ = ["StateId"]


@dataclass(frozen=True, slots=True)
class StateId:
    point: str
    """The crash point's id (`F14`, `E`)."""
    deviations: tuple[tuple[str, str], ...] = ()
    """(group name, encoded choice) of every group that kept less than everything, in order."""

    @classmethod
    def parse(cls, text: str) -> StateId:
        """The value of a printed id; only its syntax is checked (a trace says which groups exist)."""
        text = text.strip()
        point, _, rest = text.partition(":")
        devs: list[tuple[str, str]] = []
        if rest:
            for item in rest.split(","):
                name, eq, value = item.partition("=")
                if not eq or not name:
                    raise PMemError(f"crash state {text!r}: {item!r} is not a group=choice pair")
                devs.append((name, value))
        return cls(point, tuple(devs))

    def without(self, group: str) -> StateId:
        """The same state with this group's deviation dropped (the group keeps everything)."""
        return StateId(self.point, tuple(d for d in self.deviations if d[0] != group))

    def __str__(self) -> str:
        if not self.deviations:
            return self.point
        return self.point + ":" + ",".join(f"{n}={v}" for n, v in self.deviations)

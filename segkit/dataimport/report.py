"""What an import left out, grouped by reason, each with the places a user has to look at."""

from __future__ import annotations

from dataclasses import dataclass, field

# Places listed per reason; the count says how many there are in all.
MAX_PLACES = 10


@dataclass
class ImportReport:
    """Reasons in the order they first occurred, each with the places it applies to (``file:
    key`` strings), and notes: facts worth knowing that left nothing out."""

    skipped: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, place: str) -> None:
        self.skipped.setdefault(reason, []).append(place)

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def skipped_count(self) -> int:
        return sum(len(places) for places in self.skipped.values())

    def render(self) -> str:
        lines = []
        if self.skipped:
            lines.append(f"skipped {self.skipped_count} item(s):")
            for reason, places in self.skipped.items():
                lines.append(f"  {reason} ({len(places)}):")
                lines += [f"    {place}" for place in places[:MAX_PLACES]]
                if len(places) > MAX_PLACES:
                    lines.append(f"    ... and {len(places) - MAX_PLACES} more")
        else:
            lines.append("nothing was skipped")
        lines += [f"note: {text}" for text in self.notes]
        return "\n".join(lines)

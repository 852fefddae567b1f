"""Operators' verdicts and the realised precision they give. Pure.

Precision here is what people saw: correct / (correct + incorrect) of the inferences they
judged; inconclusive verdicts are counted but left out. Its interval is Wilson's score
interval (95 %), honest at small counts and near 0 or 1, where the normal one is not.
"""

import math
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["correct", "incorrect", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("correct", "incorrect", "inconclusive")
# As the dashboard's buttons say them (Roboflow's words).
NAMES: dict[str, str] = {
    "correct": "Correct",
    "incorrect": "Incorrect",
    "inconclusive": "Inconclusive",
}
Z95 = 1.959963984540054


@dataclass(slots=True)
class Verdicts:
    correct: int = 0
    incorrect: int = 0
    inconclusive: int = 0

    def add(self, verdict: str, count: int = 1) -> None:
        if verdict == "correct":
            self.correct += count
        elif verdict == "incorrect":
            self.incorrect += count
        elif verdict == "inconclusive":
            self.inconclusive += count

    @property
    def judged(self) -> int:
        """The verdicts precision rests on: correct and incorrect ones."""
        return self.correct + self.incorrect

    @property
    def precision(self) -> float | None:
        return self.correct / self.judged if self.judged else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.correct, self.judged)


def wilson(successes: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval of a proportion, or None with nothing observed."""
    if total <= 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)

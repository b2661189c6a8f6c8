"""The README's cluster quick start, read as commands, so the tests run what a platform engineer types: the e2e
tests install the chart with its `helm install` line and apply its example manifest; tests/test_readme.py checks
its image build and push lines against the Makefile and hack/images/build.sh."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SECTION = "## Quick start on a cluster"


@dataclass(frozen=True)
class QuickStart:
    commands: tuple[tuple[str, ...], ...]  # each command's words, continuation lines joined, comments dropped
    comments: tuple[str, ...]  # the comment after each command ('' where none)

    @classmethod
    def from_readme(cls, text: str | None = None) -> QuickStart:
        text = README.read_text() if text is None else text
        assert SECTION in text, f"README.md lost its '{SECTION}' section"
        block = text.split(SECTION, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
        commands, comments = [], []
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if not line.strip():
                continue
            command, _, comment = line.partition("#")
            commands.append(tuple(shlex.split(command)))
            comments.append(comment.strip())
        return cls(tuple(commands), tuple(comments))

    def starting(self, *words: str) -> list[tuple[str, ...]]:
        return [c for c in self.commands if c[:len(words)] == words]

    def only(self, *words: str) -> tuple[str, ...]:
        (command,) = self.starting(*words)
        return command

    @property
    def helm_install(self) -> tuple[str, ...]:
        """`helm install RELEASE CHART --namespace NS --create-namespace --set …` as written, without `helm`."""
        return self.only("helm", "install")[1:]

    @property
    def release(self) -> str:
        return self.helm_install[1]

    @property
    def namespace(self) -> str:
        words = self.helm_install
        return words[words.index("--namespace") + 1]

    @property
    def overrides(self) -> dict[str, str]:
        """The chart values the quick start sets."""
        words = self.helm_install
        return dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "--set")

    def helm_install_of(self, chart: Path) -> list[str]:
        """The quick start's `helm install` arguments with its chart path made absolute (tests run anywhere)."""
        words = list(self.helm_install)
        assert (REPO / words[2]).resolve() == chart.resolve(), f"the quick start installs {words[2]}, not {chart}"
        words[2] = str(chart)
        return words

    @property
    def example(self) -> Path:
        """The manifest the quick start applies."""
        words = self.only("kubectl", "apply")
        return REPO / words[words.index("-f") + 1]

"""rlprune.arguments: a dataclass of a script's arguments, parsed by argparse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from rlprune.arguments import arg, build_parser, parse


def _pair(text: str) -> tuple[float, Path]:
    target, _, path = text.partition("=")
    return float(target), Path(path)


@dataclass
class Args:
    members: list[Path] = arg(help="policy folders", nargs="+")
    target: float = arg(0.5, "MACs target")
    seeds: int = arg(3, "seeds per method")
    out: Path = arg(Path("results"), "output folder")
    note: str | None = arg(None, "a note")
    budgets: list[int] = arg(
        [50, 200], "budgets, a,b,...", parse=lambda t: [int(b) for b in t.split(",")]
    )
    single: list[tuple[float, Path]] = arg([], "T=PATH, repeatable", parse=_pair, append=True)
    trust: str = arg("family", "how to trust", choices=("family", "always"))
    resume: bool = arg(False, "keep finished results")


def test_defaults_types_and_flags_come_from_the_fields() -> None:
    args = parse(Args, ["--members", "a", "b"])
    assert args == Args(members=[Path("a"), Path("b")])
    assert args.budgets == [50, 200] and args.note is None and args.resume is False
    given = parse(
        Args,
        ["--members", "a", "--target", "0.3", "--seeds", "1", "--out", "x", "--note", "hi"]
        + ["--budgets", "12,24", "--single", "0.3=p", "--single", "0.5=q", "--trust", "always"]
        + ["--resume"],
    )
    assert (given.target, given.seeds, given.out, given.note) == (0.3, 1, Path("x"), "hi")
    assert given.budgets == [12, 24] and given.trust == "always" and given.resume
    assert given.single == [(0.3, Path("p")), (0.5, Path("q"))]


def test_list_defaults_are_not_shared_between_parses() -> None:
    first = parse(Args, ["--members", "a", "--single", "0.3=p"])
    second = parse(Args, ["--members", "a"])
    first.budgets.append(1)
    assert second.single == [] and second.budgets == [50, 200] == Args(members=[]).budgets


def test_help_lists_every_field_with_its_text() -> None:
    text = build_parser(Args, "What it does.").format_help()
    assert "What it does." in text
    for flag, help_text in (("--members", "policy folders"), ("--budgets", "budgets, a,b")):
        assert flag in text and help_text in text
    assert "{family,always}" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --members"),
        (["--members", "a", "--seeds", "x"], "argument --seeds: invalid int value: 'x'"),
        (["--members", "a", "--trust", "never"], "argument --trust: invalid choice: 'never'"),
        (["--members", "a", "--budgets", "1,b"], "argument --budgets: invalid"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(Args, argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_check_that_fails_is_a_usage_error_before_any_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def check(args: Args) -> str | None:
        return "--resume needs two members" if args.resume and len(args.members) < 2 else None

    assert parse(Args, ["--members", "a", "b", "--resume"], check=check).resume
    with pytest.raises(SystemExit) as exit_:
        parse(Args, ["--members", "a", "--resume"], check=check)
    assert exit_.value.code == 2
    assert "error: --resume needs two members" in capsys.readouterr().err


def test_a_field_of_a_type_argparse_cannot_convert_needs_a_parser() -> None:
    @dataclass
    class Bad:
        pairs: dict[str, int] = arg({}, "no converter for this")

    with pytest.raises(TypeError, match="field 'pairs'.*parse="):
        build_parser(Bad)

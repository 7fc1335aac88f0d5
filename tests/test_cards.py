"""docs/cards.md is what the planner gives today (python -m deploy.cards writes it)."""

from pathlib import Path

from deploy import cards

ROOT = Path(__file__).resolve().parents[1]


def test_committed_page_matches_the_planner():
    assert (ROOT / "docs" / "cards.md").read_text() == cards.page(), \
        "docs/cards.md is stale: run python -m deploy.cards > docs/cards.md"


def test_every_size_the_issue_names_is_there():
    assert [c.gb for c in cards.CARDS] == [8, 12, 16, 24, 32, 48, 80, 96, 141]
    assert all(c.source for c in cards.CARDS)

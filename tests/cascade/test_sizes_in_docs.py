"""The packet sizes written in docs/cascade.md are the ones constants.py computes (they drifted once: 366, 370,
374 in three places)."""

import re
from pathlib import Path

from veil.cascade import constants as C

DOC = Path(__file__).resolve().parents[2] / "docs" / "cascade.md"


def test_header_and_routing_sizes_in_the_docs_match_the_constants() -> None:
    text = DOC.read_text()
    header = re.search(r"Header \((\d+) slots × ([\d,]+) bytes\)", text)
    routing = re.search(r"Routing information \(([\d,]+) bytes, `([^`]+)`\)", text)
    assert header and routing, "docs/cascade.md no longer states the header and routing sizes"
    assert (int(header[1]), int(header[2].replace(",", ""))) == (C.MAX_HOPS, C.SLOT_SIZE)
    assert (int(routing[1].replace(",", "")), routing[2]) == (C.ROUTING_SIZE, C.ROUTING_FORMAT)
    for size in re.findall(r"\| (\d+) \+ 16 \|", text):  # the sealed routing field's row
        assert int(size) == C.ROUTING_SIZE

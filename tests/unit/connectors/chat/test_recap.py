"""The continuation mail's text: new replies first, then the chat before them."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.chat.continuation import recap_text
from connectors.chat.frames import Entry

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_the_recap_quotes_the_new_replies_then_the_earlier_chat() -> None:
    earlier = [Entry(id="m1", author="visitor", text="Where is my parcel?", at=T0),
               Entry(id="ack", author="system", text="We will answer by 11:00.", at=T0)]
    new = [Entry(id="rep_1", author="agent", name="Maria", text="It left today.\n", at=T0)]
    assert recap_text("Example Support", earlier, new) == (
        "You have a new reply in your chat with Example Support:\n\n"
        "Maria: It left today.\n\n"
        "Answer this email to continue the conversation, or go back to the chat.\n"
        "Did not chat with us? Please ignore this email: an answer would join that chat.\n\n"
        "-- Earlier in the chat --\n"
        "You: Where is my parcel?\n"
        "Example Support: We will answer by 11:00.")
    assert recap_text("Support", [], new * 2).startswith("You have new replies")

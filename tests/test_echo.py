"""Echo suspected (:mod:`screenshare_widget.echo`): the rule on real-looking sentences, the
watch on times it is given, and the conversation on a fake session and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from screenshare_widget.backend import ServerMessage
from screenshare_widget.conversation import Conversation, RelayState
from screenshare_widget.echo import (
    AFTER_VOICE_S,
    ECHO_NOTICE,
    NOTICE_EVERY_S,
    SETTLE_S,
    WINDOW_S,
    EchoWatch,
    repeats,
    words,
)

from .clock import FakeClock
from .fakes import FakeBackend, FakeSession, RecordingSink
from .test_conversation import conversation

CHART = (
    "Sure. The chart on your screen shows monthly sales by region; the north is up twelve "
    "percent since March."
)
EMULATOR = (
    "You spoke for 1.8 seconds. I have received 5 screen frames; the latest is 1024 by 576 "
    "pixels, 77 kilobytes."
)


def test_words_are_lower_case_without_punctuation() -> None:
    assert words("Sure, it's 1.8 s. ") == ["sure", "its", "18", "s"]
    assert words(" -- ... ") == []
    assert words("(spoke for 1.8 s) [noise] fine <laughs>") == ["fine"]  # notes are not words


# ---- the rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "heard"),
    [
        (CHART, "The chart on your screen shows monthly sales."),  # its echo, whole
        (CHART, " the chart on you screen shows monthly sales by"),  # one word misheard
        (CHART, "Sure, the chart on"),  # a barge-in after three words
        (CHART, "north is up twelve percent"),  # from the middle
        (CHART, "Sure. The chart. Sure, the chart on your"),  # it cut itself off twice
        (EMULATOR, "You spoke for 1.8 seconds."),
        (EMULATOR, "the latest is 1024 by 576 pixels"),
    ],
)
def test_an_echo_of_the_model_is_flagged(said: str, heard: str) -> None:
    match = repeats(heard, said)
    assert match is not None
    assert match.share >= 0.6
    assert all(" ".join(run) in " ".join(words(said)) for run in match.runs)


@pytest.mark.parametrize(
    ("said", "heard"),
    [
        (CHART, "What do you mean by region?"),  # one word quoted
        (CHART, "Region? Which region?"),  # one word, twice
        (CHART, "Region, north, March? I don't follow the chart."),  # single words
        (CHART, "Why is the north up so much?"),  # a phrase asked about
        (CHART, "Twelve percent since March? Are you sure about that?"),  # quoted, then more
        (CHART, "Yes, the chart."),  # two words of it: too few
        (CHART, "Can you scroll down to the next chart please"),
        (CHART, "okay"),
        (CHART, ""),
        (EMULATOR, "How many screen frames did you get?"),
        (
            EMULATOR,
            "(spoke for 1.8 s)",
        ),  # the emulator's note for speech it did not hear as its own
        ("", "The chart on your screen shows monthly sales."),  # the model said nothing
    ],
)
def test_a_user_who_talks_about_what_the_model_said_is_not_flagged(said: str, heard: str) -> None:
    assert repeats(heard, said) is None


def test_the_match_names_the_runs_of_the_models_words() -> None:
    match = repeats("Sure. The chart. Sure, the chart on your", CHART)
    assert match is not None
    assert match.runs == (("sure", "the", "chart"), ("sure", "the", "chart", "on", "your"))
    assert match.matched == "sure the chart … sure the chart on your"
    assert match.share == 1.0
    slip = repeats("the chart on you screen shows monthly sales by", CHART)
    assert slip is not None and slip.matched == "the chart on … screen shows monthly sales by"
    assert slip.share == pytest.approx(8 / 9)


# ---- the watch ----------------------------------------------------------------------------------


def speaking(watch: EchoWatch, text: str, now: float, *, seconds: float = 4.0) -> None:
    """The model's turn: its text in two pieces, each before half of its audio."""
    half = len(text) // 2
    watch.model_began(now)
    watch.model_text(text[:half], now)
    watch.model_audio(seconds / 2, now)
    watch.model_text(text[half:], now)
    watch.model_audio(seconds / 2, now)


def test_a_settled_echo_is_suspected_once_and_told_at_most_once_a_minute() -> None:
    watch = EchoWatch()
    speaking(watch, CHART, 0.0, seconds=6.0)
    watch.user_text("Sure, the chart on", 3.5)
    watch.user_text(" your screen", 3.9)  # the transcription comes in pieces
    assert watch.settle(3.9 + SETTLE_S - 0.1) is None  # still growing, maybe
    first = watch.settle(3.9 + SETTLE_S)
    assert first is not None
    assert first.heard == "Sure, the chart on your screen"
    assert first.matched == "sure the chart on your screen"
    assert first.notice
    assert watch.settle(10.0) is None  # judged once
    speaking(watch, CHART, 20.0)
    watch.user_text("the north is up twelve", 23.0)
    second = watch.settle(25.0)
    assert second is not None and not second.notice  # 21 s after the first was told
    speaking(watch, CHART, 4.0 + NOTICE_EVERY_S)
    watch.user_text("monthly sales by region", 6.0 + NOTICE_EVERY_S)
    third = watch.settle(8.0 + NOTICE_EVERY_S)
    assert third is not None and third.notice


def test_quoting_the_model_then_going_on_is_judged_whole() -> None:
    watch = EchoWatch()
    speaking(watch, EMULATOR, 0.0)
    watch.user_text("You spoke for", 4.5)  # alone, this would be its echo
    assert watch.settle(4.7) is None  # the user may go on
    watch.user_text(" too long, can you make it short", 4.8)
    assert watch.settle(10.0) is None


def test_pieces_of_several_barge_ins_are_judged_together() -> None:
    watch = EchoWatch()
    speaking(watch, EMULATOR, 0.0)
    watch.interrupted(0.6)  # it heard itself and stopped after half a second
    watch.user_text("You spoke", 1.5)
    assert watch.settle(3.0) is None  # two words: too few
    speaking(watch, EMULATOR, 3.0)
    watch.interrupted(3.6)
    watch.user_text("You spoke", 4.5)
    suspected = watch.settle(6.0)
    assert suspected is not None
    assert suspected.heard == "You spoke You spoke"
    assert suspected.matched == "you spoke … you spoke"


@pytest.mark.parametrize(("heard_after_s", "echo"), [(1.0, True), (3.0, False)])
def test_a_model_cutting_itself_off_after_one_word_again_and_again_is_flagged(
    heard_after_s: float, echo: bool
) -> None:
    """Each barge-in is heard as the one word the model had just said: fragments of its
    echo, when it had said it within FRAGMENT_S of the microphone hearing it."""
    watch = EchoWatch()
    found = None
    for n in range(3):
        began = (heard_after_s + 1.4) * n  # the next reply once this one was judged
        speaking(watch, EMULATOR, began)
        watch.interrupted(began + 0.4)
        voiced = began + heard_after_s  # the microphone heard "You" until then
        watch.user_text("You", voiced + 0.3, voiced_at=voiced)
        found = watch.settle(voiced + 0.3 + SETTLE_S)
        if n < 2:
            assert found is None  # one word, then two: too few
    assert (found is not None) is echo
    if found is not None:
        assert (found.heard, found.matched) == ("You You You", "you … you … you")


def test_a_user_who_answers_with_a_word_the_model_just_said_is_not_flagged() -> None:
    watch = EchoWatch()
    speaking(watch, "Which region do you mean, north or south?", 0.0)
    watch.user_text("North.", 4.5, voiced_at=4.2)  # a fragment, in form
    assert watch.settle(6.0) is None
    watch.user_text("And then compare it with last year, please.", 8.0, voiced_at=7.8)
    assert watch.settle(10.0) is None


@pytest.mark.parametrize(
    ("heard", "cut_at", "echo"),
    [
        ("the north is up twelve percent", 1.0, False),  # cut before it played
        ("the chart on your screen", 1.0, True),  # that part played
        ("the north is up twelve percent", None, True),  # it all played
    ],
)
def test_only_words_that_played_can_come_back(heard: str, cut_at: float | None, echo: bool) -> None:
    watch = EchoWatch()
    speaking(watch, CHART, 0.0, seconds=8.0)  # its second half plays from 4 s on
    if cut_at is not None:
        watch.interrupted(cut_at)  # the page dropped the rest
    watch.user_text(heard, 6.0)
    assert (watch.settle(8.0) is not None) is echo


def test_only_words_during_the_voice_or_soon_after_can_be_its_echo() -> None:
    watch = EchoWatch()
    watch.user_text("the chart on your screen", 0.0)  # the model has not spoken yet
    assert watch.settle(5.0) is None
    speaking(watch, CHART, 10.0)  # its voice plays until 14 s
    watch.user_text("the chart on your screen", 14.0 + AFTER_VOICE_S + 0.5)
    assert watch.settle(30.0) is None
    watch.user_text("the chart on your screen", 14.0 + AFTER_VOICE_S - 0.5)
    assert watch.settle(30.0) is None  # the model's words played too long before
    speaking(watch, CHART, 40.0)
    watch.user_text("the chart on your screen", 44.0 + AFTER_VOICE_S - 0.5)
    assert watch.settle(50.0) is not None
    assert WINDOW_S > 4.0 + AFTER_VOICE_S  # (why the last one is in the window)


def test_the_models_answer_is_not_the_echo_of_a_question_transcribed_after_it_began() -> None:
    answer = "The capital of France is Paris."
    for voiced_at, echo in ((12.0, False), (None, True)):
        watch = EchoWatch()
        speaking(watch, CHART, 0.0)
        # The user asks until 12.0 s; the answer plays from 12.8 s; the question's
        # transcription comes at 15.0 s (the service may send it after the answer began).
        speaking(watch, answer, 12.8)
        watch.user_text("What is the capital of France?", 15.0, voiced_at)
        # Without knowing when the microphone last heard voice, the answer would count.
        assert (watch.settle(16.5) is not None) is echo


# ---- the conversation ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def conv(
    backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> AsyncIterator[Conversation]:
    c = conversation(backend.connect, sink, clock)
    await c.start()
    await clock.settle()
    assert c.state is RelayState.LIVE
    yield c
    await c.stop()


def model_says(session: FakeSession, text: str) -> None:
    """A reply of 4 s whose text comes in 3-character pieces, each before its audio."""
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    chunk = bytes(2 * 24_000 * 4 // len(pieces))
    for piece in pieces:
        session.push(ServerMessage(output_transcription=piece))
        session.push(ServerMessage(audio=chunk))


async def test_a_barge_in_that_repeats_the_model_is_an_event_and_a_note_in_the_cell(
    conv: Conversation, backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    session = backend.sessions[0]
    model_says(session, CHART)
    await clock.advance(1.5)
    session.push(ServerMessage(interrupted=True))
    await clock.advance(0.5)
    for piece in ("Sure, the", " chart on", " your"):
        session.push(ServerMessage(input_transcription=piece))
    await clock.settle()
    assert sink.notices == []  # not judged before it settles
    await clock.advance(SETTLE_S + 0.5)  # the next relay tick judges it
    events = [e for e in conv.core.log.events if e.kind == "echo_suspected"]
    assert len(events) == 1
    assert dict(events[0].detail) == {
        "heard": "Sure, the chart on your",
        "matched": "sure the chart on your",
        "share": 1.0,
        "notice": True,
    }
    assert sink.notices == [ECHO_NOTICE]
    user = [t for t in conv.core.log.transcript if t.role == "user"]
    assert [t.text for t in user] == ["Sure, the chart on your"]  # kept as it came
    # Again 20 s later: an event, and no second note so soon.
    await clock.advance(20.0)
    model_says(session, CHART)
    await clock.advance(1.0)
    session.push(ServerMessage(interrupted=True))
    session.push(ServerMessage(input_transcription="Sure. The chart on your screen"))
    await clock.advance(SETTLE_S + 0.5)
    notices = [e.detail["notice"] for e in conv.core.log.events if e.kind == "echo_suspected"]
    assert notices == [True, False]
    assert sink.notices == [ECHO_NOTICE]


async def test_a_user_who_quotes_a_word_of_the_model_is_not_flagged(
    conv: Conversation, backend: FakeBackend, sink: RecordingSink, clock: FakeClock
) -> None:
    session = backend.sessions[0]
    model_says(session, CHART)
    await clock.advance(1.5)
    session.push(ServerMessage(interrupted=True))
    session.push(ServerMessage(input_transcription="What do you mean by region?"))
    await clock.advance(SETTLE_S + 5.0)
    assert not [e for e in conv.core.log.events if e.kind == "echo_suspected"]
    assert sink.notices == []
    assert any(t.text == "What do you mean by region?" for t in conv.core.log.transcript)

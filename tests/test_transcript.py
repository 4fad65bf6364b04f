"""The transcript data model: merging partial transcriptions into turns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from screenshare_widget.transcript import Transcript, Turn

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_pieces_merge_into_one_turn_per_side() -> None:
    tr = Transcript()
    tr.add_input(" What", at(0))
    tr.add_input(" is this?", at(1))
    tr.add_output(" It is", at(2))
    tr.add_output(" a plot.", at(3))
    tr.end_exchange(at=at(4))
    assert [(t.role, t.text.strip()) for t in tr] == [
        ("user", "What is this?"),
        ("model", "It is a plot."),
    ]
    user, model = tr
    assert (user.started_at, user.ended_at) == (at(0), at(1))
    assert (model.started_at, model.ended_at) == (at(2), at(4))
    assert not model.interrupted


def test_user_words_after_model_start_go_before_the_model_turn() -> None:
    tr = Transcript()
    changed = tr.model_started(at(2))
    assert changed == [0]
    changed = tr.add_input("Hi there", at(3))
    assert changed == [0, 1]
    assert [t.role for t in tr] == ["user", "model"]
    assert tr[0].started_at == at(2)  # never after the answer it led to


def test_interrupted_model_turn_is_flagged_and_next_speech_opens_a_new_turn() -> None:
    tr = Transcript()
    tr.add_input("Explain", at(0))
    tr.add_output("First,", at(1))
    tr.end_exchange(interrupted=True, at=at(2))
    tr.add_input("Stop", at(3))
    assert [(t.role, t.interrupted, t.done) for t in tr] == [
        ("user", False, True),
        ("model", True, True),
        ("user", False, False),
    ]


def test_close_open_marks_a_cut_model_turn_interrupted() -> None:
    tr = Transcript()
    tr.add_output("Half a sen", at(0))
    tr.close_open(at(1))
    assert tr[0].interrupted and tr[0].ended_at == at(1)
    assert tr.close_open() == []


def test_empty_pieces_change_nothing() -> None:
    tr = Transcript()
    assert tr.add_input("") == []
    assert len(tr) == 0


def test_to_pandas_and_markdown() -> None:
    tr = Transcript()
    tr.add_input(" Hello ", at(0))
    tr.add_output("Hi!", at(1))
    tr.end_exchange(interrupted=True, at=at(3))
    df = tr.to_pandas()
    assert list(df.columns) == [
        "role",
        "text",
        "started_at",
        "ended_at",
        "interrupted",
        "instruction",
        "typed",
        "duration_s",
    ]
    assert df["text"].tolist() == ["Hello", "Hi!"]
    assert df["duration_s"].tolist() == [0.0, 2.0]
    assert str(df["started_at"].dt.tz) == "UTC"
    md = tr.to_markdown()
    assert md == "**You**: Hello\n\n**Assistant**: Hi! *(interrupted)*"
    assert Transcript()._repr_markdown_() == "*(no turns yet)*"


def test_turns_are_frozen_and_records_are_json_friendly() -> None:
    turn = Turn("user", " hi ", at(0), at(1))
    record = turn.to_record()
    assert record == {
        "role": "user",
        "text": "hi",
        "started_at": at(0).timestamp(),
        "ended_at": at(1).timestamp(),
        "interrupted": False,
        "instruction": 1,
        "typed": False,
    }
    try:
        turn.text = "x"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Turn must be immutable")


def test_sequence_protocol() -> None:
    tr = Transcript()
    tr.add_input("a", at(0))
    assert tr[-1].text == "a"
    assert list(tr[0:1]) == [tr[0]]
    assert repr(tr) == "Transcript(1 turns)"


def test_turns_carry_the_instruction_version_they_began_under() -> None:
    tr = Transcript()
    tr.add_input("first", at(0))
    tr.add_output("one", at(1))
    tr.end_exchange(at=at(2))
    tr.instruction = 2
    tr.add_input("second", at(3))
    tr.add_output("two", at(4))
    assert [t.instruction for t in tr] == [1, 1, 2, 2]
    assert tr.to_pandas()["instruction"].tolist() == [1, 1, 2, 2]
    md = tr.to_markdown()
    assert md.index("Assistant**: one") < md.index("instruction v2") < md.index("You**: second")


def test_typed_text_is_a_closed_user_turn_and_the_answer_follows_it() -> None:
    tr = Transcript()
    tr.add_input("spoken", at(0))
    assert tr.add_typed("typed words", at(1)) == [1]
    typed = tr[1]
    assert typed.typed and typed.role == "user" and typed.ended_at == at(1)
    tr.add_output("answer", at(2))
    tr.end_exchange(at=at(3))
    assert [(t.role, t.text, t.typed) for t in tr] == [
        ("user", "spoken", False),
        ("user", "typed words", True),
        ("model", "answer", False),
    ]
    assert all(t.done for t in tr)
    assert "**You** *(typed)*: typed words" in tr.to_markdown()


def test_a_spoken_user_turn_spans_the_speech_not_the_transcription() -> None:
    tr = Transcript()
    tr.speech_started(at(0.2))
    tr.speech_ended(at(2.0))
    tr.add_input("What is on my screen?", at(2.9))  # transcribed after the speech ended
    tr.add_output("A plot.", at(3.1))
    tr.end_exchange(at=at(5))
    user = tr[0]
    assert (user.started_at, user.ended_at) == (at(0.2), at(2.0))
    assert tr.to_pandas()["duration_s"].tolist()[0] == 1.8


def test_speech_still_going_when_transcribed_ends_the_turn_when_it_ends() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.add_input("What is", at(0.8))  # streaming transcription while the user speaks
    tr.speech_ended(at(1.5))
    tr.speech_started(at(2.0))  # a second breath in the same turn
    tr.add_input(" this?", at(2.4))
    tr.speech_ended(at(2.6))
    tr.add_output("A map.", at(3))
    tr.end_exchange(at=at(4))
    assert (tr[0].started_at, tr[0].ended_at) == (at(0), at(2.6))


def test_a_barge_in_belongs_to_the_next_user_turn() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.add_input("Tell me a story", at(1))
    tr.speech_ended(at(1.2))
    tr.add_output("Once upon a time", at(2))
    tr.speech_started(at(3.0))  # the user talks over the answer
    tr.end_exchange(interrupted=True, at=at(3.4))
    tr.add_input("Stop", at(3.6))
    tr.speech_ended(at(3.5))
    tr.add_output("Sure.", at(4))
    tr.end_exchange(at=at(5))
    first, _, second, _ = tr
    assert (first.started_at, first.ended_at) == (at(0), at(1.2))
    assert (second.started_at, second.ended_at) == (at(3.0), at(3.5))


def test_an_untranscribed_sound_long_before_does_not_stretch_a_turn() -> None:
    tr = Transcript()
    tr.speech_started(at(0))  # a cough, never transcribed
    tr.speech_ended(at(0.3))
    tr.speech_started(at(10))
    tr.speech_ended(at(11))
    tr.add_input("Hello", at(11.5))
    tr.end_exchange(at=at(12))
    assert (tr[0].started_at, tr[0].ended_at) == (at(10), at(11))
    typed = Transcript()
    typed.speech_started(at(0))
    typed.add_typed("hi", at(1))  # typed turns keep their own time
    assert typed[0].started_at == typed[0].ended_at == at(1)


def test_the_last_pieces_of_the_users_words_after_the_answer_join_their_turn() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.speech_ended(at(2))
    tr.add_input("What is", at(2.5))
    tr.add_output("A plot.", at(3))
    tr.end_exchange(at=at(4))
    tr.add_input(" this?", at(4.5))  # later than the turnComplete, no new speech since
    assert [(t.role, t.text) for t in tr] == [("user", "What is this?"), ("model", "A plot.")]
    tr.add_input("Next", at(4.5 + 10))  # much later: a turn of its own
    assert [t.text for t in tr][-1] == "Next"


def test_words_with_new_speech_since_do_not_join_the_last_turn() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.speech_ended(at(1))
    tr.add_input("One", at(1.5))
    tr.add_output("Yes.", at(2))
    tr.end_exchange(at=at(3))
    tr.speech_started(at(3.2))  # the user speaks again
    tr.add_input("Two", at(3.6))
    assert [t.text for t in tr] == ["One", "Yes.", "Two"]


def test_words_after_an_answer_that_had_no_user_turn_go_before_it() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.speech_ended(at(1.5))
    tr.add_output("Sure.", at(2))
    tr.end_exchange(at=at(3))
    tr.add_typed("typed later", at(3.5))
    assert tr.add_input("Help me", at(4)) == [0, 1, 2]
    assert [(t.role, t.text) for t in tr] == [
        ("user", "Help me"),
        ("model", "Sure."),
        ("user", "typed later"),
    ]
    user = tr[0]
    assert (user.started_at, user.ended_at) == (at(0), at(1.5))


def test_typed_text_never_takes_late_words() -> None:
    tr = Transcript()
    tr.add_typed("typed", at(0))
    tr.add_output("Answer.", at(1))
    tr.end_exchange(at=at(2))
    tr.add_input("spoken", at(2.5))
    assert [t.text for t in tr] == ["typed", "Answer.", "spoken"]


def test_speech_sent_again_to_a_new_connection_stays_one_turn() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.speech_ended(at(2))
    tr.add_input("(spoke", at(2.5))
    tr.add_input(" for 2.0 s)", at(2.6))
    tr.add_output("You spoke", at(3))
    tr.end_exchange(interrupted=True, at=at(3.5))  # the connection ended mid-answer
    assert tr.expect_retranscription(at(4)) == [0]
    tr.add_input("(spoke for", at(5))  # the new connection hears it again
    tr.add_input(" 2.0 s)", at(5.1))
    tr.add_output("You spoke for 2.0 seconds.", at(6))
    tr.end_exchange(at=at(7))
    assert [(t.role, t.text, t.interrupted) for t in tr] == [
        ("user", "(spoke for 2.0 s)", False),
        ("model", "You spoke", True),
        ("model", "You spoke for 2.0 seconds.", False),
    ]
    assert (tr[0].started_at, tr[0].ended_at) == (at(0), at(2))


def test_an_answered_turn_is_not_reopened() -> None:
    tr = Transcript()
    tr.add_input("Hi", at(0))
    tr.add_output("Hello.", at(1))
    tr.end_exchange(at=at(2))
    assert tr.expect_retranscription(at(3)) == []
    tr.add_input("Next", at(4))
    assert [t.text for t in tr] == ["Hi", "Hello.", "Next"]


def test_a_replayed_barge_in_gets_its_own_turn_not_the_question_before_it() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.speech_ended(at(2))
    tr.add_input("(spoke for 2.0 s)", at(2.5))
    tr.add_output("You spoke", at(3))
    tr.speech_started(at(5))  # the user talks over the answer ...
    tr.end_exchange(interrupted=True, at=at(5.3))
    tr.speech_ended(at(6.5))  # ... and the connection ends before that is transcribed
    assert tr.expect_retranscription(at(7), question=False) == []
    tr.add_input("(spoke for 1.5 s)", at(8))
    tr.add_output("You spoke for 1.5 seconds.", at(9))
    tr.end_exchange(at=at(10))
    assert [(t.role, t.text) for t in tr] == [
        ("user", "(spoke for 2.0 s)"),
        ("model", "You spoke"),
        ("user", "(spoke for 1.5 s)"),
        ("model", "You spoke for 1.5 seconds."),
    ]
    assert (tr[2].started_at, tr[2].ended_at) == (at(5), at(6.5))


def test_echo_over_a_reply_cut_without_an_interruption_goes_with_the_question() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.speech_ended(at(2))
    tr.add_input("What is this?", at(2.5))
    tr.add_output("It is", at(3))
    tr.speech_started(at(3.5))  # an echo of the reply, heard over it
    tr.speech_ended(at(3.8))
    tr.end_exchange(interrupted=True, at=at(4))  # the connection went quiet mid-reply
    assert tr.expect_retranscription(at(5)) == [0]  # the replay holds the question
    tr.add_input("What is this?", at(6))
    tr.add_output("A chart.", at(7))
    tr.end_exchange(at=at(8))
    assert [t.text for t in tr] == ["What is this?", "It is", "A chart."]


def test_a_retranscription_after_the_answer_replaces_the_turn_text_too() -> None:
    tr = Transcript()
    tr.speech_started(at(0))
    tr.speech_ended(at(2))
    tr.add_input("What is this?", at(2.5))
    tr.add_output("It is", at(3))
    tr.end_exchange(interrupted=True, at=at(4))
    tr.expect_retranscription(at(5))
    tr.add_output("A chart.", at(6))  # the new answer comes before the words heard again
    tr.end_exchange(at=at(7))
    tr.add_input("What is this?", at(7.5))
    assert [t.text for t in tr] == ["What is this?", "It is", "A chart."]

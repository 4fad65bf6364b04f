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

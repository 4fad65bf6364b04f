import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    mo.md(
        """
        # Quickstart: a voice assistant that sees your screen (marimo)

        Click **Share screen & mic** in the widget below, pick what to share, and talk.
        The assistant sees what you share (at most one frame a second) and answers aloud.

        - With `GEMINI_API_KEY` (or `GOOGLE_API_KEY`) set where marimo runs, it talks to
          **Gemini Live**.
        - Without a key it runs on the **local Live emulator**, which says so in the widget:
          it answers what it received (how long you spoke, how many frames), so you can check
          the whole path without a key.

        Run it with `marimo edit notebooks/quickstart_marimo.py`, or as an app with
        `marimo run notebooks/quickstart_marimo.py`.
        """
    )
    return (mo,)


@app.cell
def _(mo):
    from screenshare_widget import ScreenShareAssistant

    assistant = ScreenShareAssistant(
        system_instruction=(
            "You are a concise assistant looking at my screen. Answer in one or two sentences."
        ),
        voice="Puck",
    )
    widget = mo.ui.anywidget(assistant)
    widget
    return (assistant,)


@app.cell
def _(mo):
    mo.md(
        """
        The conversation is Python data. Click to read the transcript as a table (it keeps
        growing while you talk; click again for the newest).
        """
    )
    show_transcript = mo.ui.run_button(label="Show the transcript")
    show_transcript
    return (show_transcript,)


@app.cell
def _(assistant, mo, show_transcript):
    mo.stop(not show_transcript.value, mo.md("*Not read yet.*"))
    assistant.transcript.to_pandas()
    return


@app.cell
def _(mo):
    instruction = mo.ui.text_area(
        label="A new system instruction, applied while live",
        value="Answer like a pirate, in one sentence.",
    )
    apply_instruction = mo.ui.run_button(label="Apply")
    mo.hstack([instruction, apply_instruction], align="end")
    return apply_instruction, instruction


@app.cell
def _(apply_instruction, assistant, instruction, mo):
    mo.stop(not apply_instruction.value)
    assistant.system_instruction = instruction.value
    mo.md(f"Applied as version {assistant.instruction_version}.")
    return


@app.cell
def _(mo):
    stop = mo.ui.run_button(label="End the conversation")
    stop
    return (stop,)


@app.cell
def _(assistant, mo, stop):
    mo.stop(not stop.value)
    assistant.stop()
    mo.md(f"Status: {assistant.status}. The transcript stays.")
    return


if __name__ == "__main__":
    app.run()

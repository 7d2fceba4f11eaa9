"""A full, closed or broken stdout or stderr never stops a separation: the stems are all written, the text is lost,
and the exit status still reports a failed input."""

import subprocess
import sys

import pytest
import soundfile

REDIRECTIONS = {
    "stdout full": "> /dev/full",
    "stdout closed": ">&-",
    "stdout reader gone": "| head -c 1 > /dev/null",
    "stderr full": "2> /dev/full",
    "stderr closed": "2>&-",
    "stderr reader gone": "2>&1 >/dev/null | head -c 1 > /dev/null",
    "both closed": ">&- 2>&-",
}


@pytest.mark.slow
@pytest.mark.parametrize("redirection", REDIRECTIONS.values(), ids=REDIRECTIONS)
def test_every_input_is_separated_whatever_happens_to_the_output_streams(redirection, tiny_model_file, tmp_path):
    for name in ("a", "b", "c"):
        soundfile.write(tmp_path / f"{name}.wav", [[0.1, -0.1]] * 8000, 8000)
    # missing.wav is not there: one input fails, and the exit status must still say so
    command = (f"{sys.executable} -m tfsep.cli separate a.wav missing.wav b.wav c.wav --model {tiny_model_file} "
               f"-o out {redirection}; echo $? > status")
    subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path, timeout=300)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c"]
    for track in ("a", "b", "c"):
        assert len(list((tmp_path / "out" / track).iterdir())) == 4
    assert (tmp_path / "status").read_text().strip() == "1"


def test_a_stream_that_fails_takes_its_text_to_nothing(tmp_path):
    script = ("import sys\nfrom tfsep import terminal\n"
              "with terminal.guarded():\n"
              "    for k in range(3):\n        print('line', k)\n        print('note', k, file=sys.stderr)\n"
              "print('after', file=sys.stderr)\n")
    result = subprocess.run(["bash", "-c", f"{sys.executable} -c \"{script}\" > /dev/full"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert result.stderr == "note 0\nnote 1\nnote 2\nafter\n"  # no traceback, no "Exception ignored" at exit

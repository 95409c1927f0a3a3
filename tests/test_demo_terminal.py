"""What `make demo` prints: kfp.local's task output goes to the run's log file, the screen gets one line per
task; our own code raises no warnings on the demo's paths."""

import subprocess
import sys
from pathlib import Path

from aigp.cli.demo_pipeline import output_to, task_lines


def test_kfp_local_task_output_goes_to_the_log_file_not_the_screen(tmp_path: Path, capfd) -> None:
    from kfp import dsl, local

    @dsl.component(base_image="python:3.11")
    def shout(word: str) -> str:
        print(f"task says {word}")
        return word

    @dsl.pipeline(name="terminal")
    def terminal(word: str = "hello") -> None:
        shout(word=word)

    log = tmp_path / "kfp-local.log"
    with output_to(log):
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
                   raise_on_error=True)
        terminal(word="quietly")
        subprocess.run([sys.executable, "-c", "import sys; print('child out'); print('child err', file=sys.stderr)"],
                       check=True)
    screen = capfd.readouterr()
    text = log.read_text()
    assert "task says quietly" in text and "executor_input" in text
    assert "child out" in text and "child err" in text
    assert "quietly" not in screen.out + screen.err and "child" not in screen.out + screen.err
    assert task_lines(log) == ["shout: SUCCESS"]
    print("after the block")  # the screen is back
    assert "after the block" in capfd.readouterr().out

"""fer_keras/run_dir.py: which folder a run name means, the printed resume command, and who writes a run."""

import os
import shlex

from fer_keras.run_dir import resume_command, run_folder, run_lock, run_writer


def test_a_name_means_its_existing_folder_else_its_slug(tmp_path):
    runs = str(tmp_path)
    assert run_folder(runs, "my run") == os.path.join(runs, "my-run")  # a new run gets a file-name-safe folder
    os.makedirs(os.path.join(runs, "my run"))
    assert run_folder(runs, "my run") == os.path.join(runs, "my run")  # an existing folder is that folder
    assert run_folder(runs, "..") == os.path.join(runs, "run")  # never the runs folder itself or above it


def test_the_printed_resume_command_keeps_a_path_with_spaces_one_word():
    cmd = resume_command("/data/My Drive/runs/a b")
    assert shlex.split(cmd)[-1] == "/data/My Drive/runs/a b"


def test_the_writer_of_a_run_is_the_live_holder_of_its_lock(tmp_path):
    run = str(tmp_path / "r")
    assert run_writer(run) is None
    with run_lock(run):
        assert run_writer(run) == f"process {os.getpid()}"
    assert run_writer(run) is None  # released (and its lock file removed) when the writer ends

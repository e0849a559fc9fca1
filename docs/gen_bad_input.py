"""Writes docs/bad-input.md: the bad-input corpus counted by class, from the tests that are the corpus.

    python docs/gen_bad_input.py          # rewrite docs/bad-input.md (collects the tests: no test runs)
    python docs/gen_bad_input.py --check  # exit 1 when the page is out of date (tests/test_docs.py runs this)

Each class lists its tests as `file::function`; every collected case of them (each parametrized case) counts once.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# class -> (what a user gets, the tests that check it)
CLASSES = {
    "Dataset files, labels and annotations": (
        "one `error:` line naming the file and row (exit 2), or skipped and counted with `--skip-bad`",
        ["test_bad_inputs::test_bad_input_case", "test_bad_inputs::test_bad_input_class_as_the_user_sees_it",
         "test_bad_inputs::test_image_that_fails_only_at_decode_time_is_one_line",
         "test_bad_inputs::test_unusual_but_valid_images_are_read",
         "test_ferplus_expw::test_bad_vote_rows_name_the_row",
         "test_ferplus_expw::test_vote_counts_must_be_whole_and_bounded",
         "test_ferplus_expw::test_vote_row_naming_a_missing_image", "test_clips::test_missing_clip_and_missing_frames",
         "test_clips::test_validate_images_full_finds_a_frame_that_passes_the_header_check"]),
    "Flags and config": (
        "one line naming the flag or key and the valid values",
        ["test_bad_inputs::test_bad_cli_arguments", "test_cli_errors::test_training_range_and_path_errors",
         "test_cli_errors::test_a_wrong_option_value_names_the_nearest_valid_one",
         "test_config::test_yaml_errors_name_line_and_column_and_values_are_capped"]),
    "Model files and their metadata": (
        "one line naming the file; a model that disagrees with its labels.json is refused before anything is written",
        ["test_bad_inputs::test_corrupted_model_and_foreign_run",
         "test_bad_inputs::test_lambda_model_refused_in_safe_mode_unless_opted_out",
         "test_bad_inputs::test_truncated_keras_file_is_named_as_truncated",
         "test_bad_inputs::test_teacher_sharing_no_class_is_one_line",
         "test_evaluate::test_a_model_that_disagrees_with_its_metadata_is_refused_and_nothing_is_overwritten",
         "test_evaluate::test_bad_sidecar_values_are_one_line",
         "test_pretrained::test_shipped_model_names_resolve_and_are_listed_in_help"]),
    "Weight files (PyTorch .pth)": (
        "no code runs from the file (no standard unpickler), no read outside a storage; one line naming it",
        ["test_offline_imagenet::test_reader_refuses_code_and_garbage",
         "test_offline_imagenet::test_legacy_header_pickles_never_run_code",
         "test_offline_imagenet::test_tensor_outside_its_storage_is_refused"]),
    "Runs: identity, one writer, resume, full disk": (
        "`--resume PATH` continues exactly that folder; a live run is never trained twice; failures say how to go on",
        ["test_training::test_resume_continues_exactly_that_folder",
         "test_training::test_resume_of_a_run_being_trained_is_refused",
         "test_training::test_resume_refuses_a_changed_model_but_takes_a_new_time_limit",
         "test_training::test_a_damaged_backup_is_a_read_error_naming_it",
         "test_training::test_failed_write_at_an_epoch_end_redoes_that_epoch",
         "test_fitting::test_one_fit_tail_translates_what_stops_a_fit",
         "test_training::test_resume_of_a_run_whose_config_no_longer_loads_is_one_line",
         "test_cli_errors::test_same_named_run_cannot_be_trained_twice_at_once",
         "test_cli_errors::test_a_failed_start_leaves_no_run"]),
    "Multi-worker start-up": (
        "one line naming the port, the missing worker or the differing config keys (exit 2)",
        ["test_multiworker::test_tf_config_errors_are_one_line",
         "test_multiworker::test_bad_tf_config_exits_2_with_one_line",
         "test_multiworker::test_workers_with_different_configs_both_refuse_naming_the_keys",
         "test_multiworker::test_a_busy_port_is_one_line_naming_it",
         "test_multiworker::test_a_worker_whose_peer_never_comes_says_whom_it_waits_for_then_stops",
         "test_multiworker::test_tf_config_without_the_strategy_is_one_warning"]),
    "Photos for predict: size, decoding, orientation, writes": (
        "refused by the header or listed in errors.csv, the other inputs go on; unwritable outputs are counted",
        ["test_bad_inputs::test_predict_refuses_a_decompression_bomb_and_goes_on",
         "test_bad_inputs::test_predict_refuses_a_400_megapixel_header_without_decoding",
         "test_bad_inputs::test_no_detect_keeps_a_one_pixel_wide_image",
         "test_images::test_training_evaluation_and_predict_see_the_same_upright_pixels",
         "test_predict::test_an_output_image_that_cannot_be_written_is_listed_not_silent",
         "test_predict::test_flat_folder_with_labels_csv_is_scored"]),
    "Videos and webcams": (
        "one line each, decoded frames kept",
        ["test_bad_inputs::test_missing_webcam_is_an_error", "test_yunet_video::test_bad_videos_are_one_line_each"]),
    "Python API": (
        "`ValueError` / `FileNotFoundError` naming the input, never a TensorFlow error",
        ["test_api::test_bad_input_raises_value_errors_naming_it",
         "test_api::test_an_undecodable_image_file_names_it"]),
}


def collected_counts() -> collections.Counter:
    """Collected test cases per `file::function` of the corpus files (pytest --collect-only: no test runs)."""
    files = sorted({t.split("::")[0] for _, tests in CLASSES.values() for t in tests})
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *[f"tests/{f}.py" for f in files]], cwd=ROOT, capture_output=True, text=True)
    counts = collections.Counter()
    for line in proc.stdout.splitlines():
        m = re.match(r"tests/(\w+)\.py::(\w+)", line)
        if m:
            counts[f"{m.group(1)}::{m.group(2)}"] += 1
    return counts


def page(counts) -> str:
    rows, total = [], 0
    for name, (gets, tests) in CLASSES.items():
        n = sum(counts[t] for t in tests)
        total += n
        rows.append(f"| {name} | {n} | {gets} | {', '.join(f'`{t}`' for t in tests)} |")
    return "\n".join([
        "# The bad-input corpus", "",
        "Every case is a test made at test time (no bad file is stored), run by `python -m pytest -q --run-slow`.",
        "Generated by `python docs/gen_bad_input.py` from the collected tests; do not edit by hand.", "",
        f"{total} cases in {len(CLASSES)} classes.", "",
        "| class | cases | what a user gets | tests |", "|---|---|---|---|", *rows, ""])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    counts = collected_counts()
    missing = [t for _, tests in CLASSES.values() for t in tests if not counts[t]]
    if missing:
        print(f"no such test: {', '.join(missing)}")
        return 1
    from _pages import write_or_check

    return write_or_check(os.path.join(HERE, "bad-input.md"), page(counts), "--check" in argv,
                          "python docs/gen_bad_input.py")


if __name__ == "__main__":
    raise SystemExit(main())

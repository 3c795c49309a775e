"""bert/teacher.py: what a user sees when the teacher is not exported yet."""

import pytest

from bert import teacher
from bert.errors import UserError


def test_unexported_teacher_says_how_to_export_it(tmp_path):
  # A trained but unexported teacher: an output dir with no saved_model.pb.
  (tmp_path / "run_config.json").write_text("{}")
  with pytest.raises(UserError) as e:
    teacher.Teacher([str(tmp_path)])
  message = str(e.value)
  assert message.startswith(f"--teacher_model: {tmp_path}: not a SavedModel")
  assert message.endswith("export the trained teacher first with bash "
                          "scripts/export_teacher.sh (or train it with "
                          "--do_export)")
  assert "\n" not in message

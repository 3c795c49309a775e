"""TF Hub BERT encoders (TF2 SavedModel format): export ours, fine-tune any.

Work in progress: flags are final; the rest is being written.
"""

from __future__ import annotations

from absl import flags


def define_flags() -> None:
  """Defines the TF Hub flags (idempotent: safe to call twice)."""
  if "bert_hub_module_handle" in flags.FLAGS:
    return
  flags.DEFINE_string(
      "bert_hub_module_handle", None,
      "A TF2 SavedModel in TF Hub's BERT encoder format (a local path or hub "
      "handle); replaces --bert_config_file/--init_checkpoint")
  flags.DEFINE_bool(
      "do_export_encoder", False,
      "Export this project's encoder in TF Hub's BERT encoder format to "
      "--export_dir")

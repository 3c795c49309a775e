"""Experiment: does pre-training make a teacher worth distilling, and what
carries its knowledge into a 2-layer student?

All runs fine-tune on the waimai train split with the corpus vocabulary
(sequence 64, 3 epochs, batch 32, `--group_by_length=50`) and report dev
accuracy, mean and spread over --seeds.  Arms:

  teacher_scratch          4x256 teacher from random weights
  teacher_pretrained       the same from --teacher_checkpoint (run_pretraining)
  student_labels           2x128 student from random weights, labels only
  student_distilled        the same distilled from the best pre-trained
                           teacher (by dev; T=10, alpha 0.5, cached logits)
  student_pt_labels        2x128 student from --student_checkpoint (its own
                           masked-LM pre-training), labels only
  student_pt_distilled     that student distilled from the best teacher
  student_pt_ensemble      that student distilled from all pre-trained
                           teachers (Hinton's ensemble of seeds)
  student_pt_ngram         that student distilled from the best teacher and
                           --teacher_probs_file (e.g. the n-gram teacher)
  student_gd_labels        2x128 student after TinyBERT's general
                           distillation (embeddings and hidden states, one
                           epoch of --corpus_file) from the best teacher,
                           then labels only; each seed runs its own general
                           distillation, so the spread includes it
  student_gd_distilled     that student, then distilled from the best teacher

--search=T,T,...:alpha,alpha,... also runs student_pt_distilled over that
grid of temperature and alpha (same seeds) and plots dev accuracy against
the temperature, one line per alpha, to <work_dir>/search.png.

  bash scripts/pretrain.sh                                    # the teacher
  OUTPUT_DIR=output/pretrain_student LAYERS=2 HIDDEN=128 bash scripts/pretrain.sh
  python benchmarks/pretrain_distill.py \
    --teacher_checkpoint=output/pretrain --student_checkpoint=output/pretrain_student

Finished runs are reused, so an interrupted experiment resumes.  Skips
cleanly when ../shared/data/waimai is absent.
"""

import os
import statistics
import sys
import time

from absl import app, flags

import runs  # benchmarks/runs.py, beside this file.

ROOT = runs.ROOT
sys.path.insert(0, ROOT)
from bert import modeling  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", os.path.join(ROOT, "..", "shared", "data",
                                             "waimai"), "text&label data.")
flags.DEFINE_string("work_dir", os.path.join(ROOT, "output",
                                             "pretrain_distill"),
                    "Where runs go.")
flags.DEFINE_string("vocab_file", os.path.join(ROOT, "data", "corpus",
                                               "vocab.txt"),
                    "The vocab the checkpoints were pre-trained with.")
flags.DEFINE_string("teacher_checkpoint", None, "Pre-trained 4x256 teacher "
                    "(a run_pretraining.py output_dir or checkpoint).")
flags.DEFINE_string("student_checkpoint", None, "Pre-trained 2x128 student.")
flags.DEFINE_string("teacher_probs_file", None, "A teacher as a file, for "
                    "student_pt_ngram (benchmarks/ngram_teacher.py).")
flags.DEFINE_string("corpus_file", os.path.join(ROOT, "data", "corpus",
                                                "corpus.txt"),
                    "Unlabelled text for the student_gd_* arms' general "
                    "distillation (bert/prepare_corpus.py).")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds.")
flags.DEFINE_list("arms", ["teacher_scratch", "teacher_pretrained",
                           "student_labels", "student_distilled",
                           "student_pt_labels", "student_pt_distilled",
                           "student_pt_ensemble"], "Which arms to run.")
flags.DEFINE_float("teacher_learning_rate", 1e-4, "Teachers' peak LR.")
flags.DEFINE_float("student_learning_rate", 3e-4, "Students' peak LR.")
flags.DEFINE_list("distill_flags", [], "Extra flags for the distilled arms "
                  "(e.g. --temperature=4); --tag keeps them apart.")
flags.DEFINE_string("tag", "", "Suffix of the student arms' directories "
                    "(other --distill_flags or --student_checkpoint).")
flags.DEFINE_string("search", None, "A grid for student_pt_distilled: "
                    "temperatures:alphas, e.g. 1,4,10:0.5,0.9.")
flags.DEFINE_integer("max_seq_length", 64, "Sequence length.")
flags.DEFINE_float("epochs", 3.0, "Training epochs.")


def write_config(work_dir: str, vocab_size: int, layers: int,
                 hidden: int) -> str:
  path = os.path.join(work_dir, f"bert_config_{layers}x{hidden}.json")
  with open(path, "w") as f:
    f.write(modeling.sized_config(vocab_size, layers, hidden).to_json_string())
  return path


def main(argv):
  del argv
  work_dir = FLAGS.work_dir
  vocab_size = runs.start_experiment(FLAGS.data_dir, work_dir,
                                     FLAGS.vocab_file)
  if vocab_size is None:
    return
  teacher_config = write_config(work_dir, vocab_size, 4, 256)
  student_config = write_config(work_dir, vocab_size, 2, 128)
  common = ["--task_name=emotion", f"--data_dir={FLAGS.data_dir}",
            f"--vocab_file={FLAGS.vocab_file}", "--do_train", "--do_eval",
            f"--max_seq_length={FLAGS.max_seq_length}",
            f"--num_train_epochs={FLAGS.epochs}", "--eval_batch_size=64",
            "--group_by_length=50", "--log_steps=200",
            f"--cache_dir={os.path.join(work_dir, 'cache')}"]
  teacher = common + [f"--bert_config_file={teacher_config}",
                      f"--learning_rate={FLAGS.teacher_learning_rate}"]
  student = common + [f"--bert_config_file={student_config}",
                      f"--learning_rate={FLAGS.student_learning_rate}"]
  pretrained_student = student + (
      [f"--init_checkpoint={FLAGS.student_checkpoint}"]
      if FLAGS.student_checkpoint else [])
  table: dict[str, list[float]] = {}
  start = time.time()

  def arm(name: str, script: str, flags_: list[str],
          seed_flags=lambda seed: []) -> list[str]:
    """Runs arm `name` over the seeds (`seed_flags(seed)`: flags of that
    seed's run alone); returns its output dirs."""
    if not name.startswith("teacher"):
      name += FLAGS.tag
    dirs = []
    for seed in FLAGS.seeds:
      output_dir = os.path.join(work_dir, f"{name}_{seed}")
      log = output_dir + ".log"
      accuracy = runs.run(script, output_dir, flags_ + [f"--seed={seed}"] +
                          seed_flags(seed), log)["eval_accuracy"]
      table.setdefault(name, []).append(accuracy)
      print(f"{name} seed {seed}: dev {accuracy:.4f}", flush=True)
      dirs.append(output_dir)
    return dirs

  def exported(output_dir: str) -> str:
    export_dir = os.path.join(output_dir, "export")
    if os.path.isdir(export_dir):
      return export_dir
    return runs.export(output_dir, [], output_dir + ".log",
                       script="run_classifier.py")

  arms = set(FLAGS.arms)
  if "teacher_scratch" in arms:
    arm("teacher_scratch", "run_classifier.py", teacher)
  teachers = []
  if arms & {"teacher_pretrained", "student_distilled",
             "student_pt_distilled", "student_pt_ensemble",
             "student_pt_ngram", "student_gd_labels",
             "student_gd_distilled"}:
    if not FLAGS.teacher_checkpoint:
      raise app.UsageError("--teacher_checkpoint is needed by " +
                           ", ".join(sorted(arms - {"teacher_scratch"})))
    dirs = arm("teacher_pretrained", "run_classifier.py", teacher + [
        f"--init_checkpoint={FLAGS.teacher_checkpoint}"])
    # Best by dev: tuning on dev is what a user can do.
    accuracies = table["teacher_pretrained"]
    teachers = [exported(d) for d in dirs]
    best = teachers[accuracies.index(max(accuracies))]
    print(f"teacher for the students: {best}", flush=True)
  distill = ["--cache_teacher_logits"] + FLAGS.distill_flags
  if "student_labels" in arms:
    arm("student_labels", "run_classifier.py", student)
  if "student_distilled" in arms:
    arm("student_distilled", "run_classifier_distill.py",
        student + distill + [f"--teacher_model={best}"])
  if arms & {"student_pt_labels", "student_pt_distilled",
             "student_pt_ensemble", "student_pt_ngram"}:
    if not FLAGS.student_checkpoint:
      raise app.UsageError("the student_pt_* arms need --student_checkpoint")
  if "student_pt_labels" in arms:
    arm("student_pt_labels", "run_classifier.py", pretrained_student)
  if "student_pt_distilled" in arms:
    arm("student_pt_distilled", "run_classifier_distill.py",
        pretrained_student + distill + [f"--teacher_model={best}"])
  if "student_pt_ensemble" in arms:
    arm("student_pt_ensemble", "run_classifier_distill.py",
        pretrained_student + distill + [
            "--teacher_model=" + ",".join(teachers)])
  if "student_pt_ngram" in arms:
    if not FLAGS.teacher_probs_file:
      raise app.UsageError("student_pt_ngram needs --teacher_probs_file")
    arm("student_pt_ngram", "run_classifier_distill.py",
        pretrained_student + distill + [
            f"--teacher_model={best}",
            f"--teacher_probs_file={FLAGS.teacher_probs_file}"])

  if arms & {"student_gd_labels", "student_gd_distilled"}:

    def general_student(seed: int) -> list[str]:
      """--init_checkpoint of seed's general distillation (run once)."""
      general = os.path.join(work_dir, f"student_general{FLAGS.tag}_{seed}")
      if not os.path.exists(os.path.join(general, "checkpoint")):
        runs.call_script("run_classifier_distill.py", general, [
            "--task_name=emotion", f"--vocab_file={FLAGS.vocab_file}",
            f"--bert_config_file={student_config}", f"--teacher_model={best}",
            f"--max_seq_length={FLAGS.max_seq_length}", "--stage=intermediate",
            "--intermediate_losses=embedding,hidden",
            f"--transfer_file={FLAGS.corpus_file}", "--train_on_transfer_only",
            "--learning_rate=5e-4", "--num_train_epochs=1",
            "--group_by_length=50", "--do_train", "--log_steps=200",
            f"--seed={seed}"], general + ".log")
      return [f"--init_checkpoint={general}"]

    if "student_gd_labels" in arms:
      arm("student_gd_labels", "run_classifier.py", student, general_student)
    if "student_gd_distilled" in arms:
      arm("student_gd_distilled", "run_classifier_distill.py",
          student + distill + [f"--teacher_model={best}"], general_student)
  grid = {}
  if FLAGS.search:
    temperatures, alphas = (
        [float(v) for v in part.split(",")] for part in FLAGS.search.split(":"))
    for alpha in alphas:
      for temperature in temperatures:
        name = f"student_pt_distilled_T{temperature:g}_a{alpha:g}"
        arm(name, "run_classifier_distill.py", pretrained_student + [
            "--cache_teacher_logits", f"--teacher_model={best}",
            f"--temperature={temperature}", f"--alpha={alpha}"])
        grid[(alpha, temperature)] = table[name + FLAGS.tag]
    plot_search(grid, os.path.join(work_dir, "search.png"))

  print(f"\n{len(FLAGS.seeds)} seeds, {FLAGS.epochs:g} epochs, "
        f"{(time.time() - start) / 60:.0f} min; waimai dev accuracy")
  runs.print_seed_table(table)



def plot_search(grid: dict[tuple[float, float], list[float]],
                path: str) -> None:
  """Dev accuracy (mean, seeds' spread as error bars) against temperature,
  one line per alpha."""
  # pylint: disable=import-outside-toplevel
  import matplotlib
  matplotlib.use("Agg")  # No display on servers.
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  for alpha in sorted({a for a, _ in grid}):
    points = sorted((t, v) for (a, t), v in grid.items() if a == alpha)
    ax.errorbar([t for t, _ in points],
                [statistics.mean(v) for _, v in points],
                yerr=[statistics.stdev(v) if len(v) > 1 else 0
                      for _, v in points],
                marker="o", capsize=3, label=f"alpha {alpha:g}")
  ax.set_xscale("log")
  ax.set_xlabel("temperature")
  ax.set_ylabel("dev accuracy (mean, seeds' std)")
  ax.set_title("2x128 pre-trained student distilled on waimai")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)

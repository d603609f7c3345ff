# Job runners, as in Kaldi's and ESPnet's recipes: the command that runs a
# step's parallel jobs (features, embeddings), called as
#   $train_cmd JOB=1:N <log-with-JOB> <command with JOB ...>
# and checked by its exit status. Pick one:
#   run_jobs.sh                       this machine, all jobs at once (the default)
#   run_jobs.sh --max-jobs-run 4      this machine, at most 4 at a time
#   slurm.sh --mem 4G --time 1:00:00  Slurm: one sbatch job array per call, waited for, each task's
#                                     exit checked (utils/slurm.sh; PURL_SBATCH_OPTS for the rest)
#   /path/to/kaldi/egs/wsj/s5/utils/parallel/run.pl   (or queue.pl --mem 4G, slurm.pl --mem 4G):
#                                     your copy of Kaldi's runners; the steps only call them with JOB=A:B
# Training is not a job list: steps/train.sh runs torchrun, under Slurm with --slurm true
# (srun, one torchrun per node; see the README).
export train_cmd="run_jobs.sh"

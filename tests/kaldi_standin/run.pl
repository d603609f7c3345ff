#!/usr/bin/env perl
# A stand-in for Kaldi's utils/run.pl, written for the tests (not Kaldi's code):
# it takes its arguments the way Kaldi's run.pl does, so that a step calling
# it wrongly fails here as it would with Kaldi's.
#   run.pl [--max-jobs-run N] [--mem X] [--num-threads N] [--gpu N] [JOB=A:B | JOB=A] <log> <command ...>
# Anything else in the first place (e.g. JOB=1,2) is, as for Kaldi's, the log file.
# The command words are joined with spaces, as Kaldi's are: a word without
# whitespace as it is, one with a double quote in single quotes, any other in
# double quotes (so the shell expands $ in it),
# every JOB in the log and command becomes the job number, each job runs with
# bash -c and its output goes to its log, which ends with '# Ended (code N)'.
# Exit status 1 when any job failed, with the count and a failed log named.
use strict;
use warnings;

my %ignored = map { $_ => 1 } qw(--mem --num-threads --gpu --config --time --max-jobs-run);
while (@ARGV && $ARGV[0] =~ /^--/) {
  my $opt = shift @ARGV;
  die "run.pl: unknown option $opt\n" unless $ignored{$opt};
  shift @ARGV;
}
my ($var, $first, $last) = ("", 1, 1);
if (@ARGV && $ARGV[0] =~ /^([\w_][\w\d_]*)=(\d+):(\d+)$/) {
  ($var, $first, $last) = ($1, $2, $3);
  shift @ARGV;
} elsif (@ARGV && $ARGV[0] =~ /^([\w_][\w\d_]*)=(\d+)$/) {
  ($var, $first, $last) = ($1, $2, $2);
  shift @ARGV;
}
die "usage: run.pl [options] [JOB=1:n] log-file command-line arguments...\n" if @ARGV < 2;
my $logfile = shift @ARGV;
my $cmd = "";
for my $word (@ARGV) {
  if ($word =~ /^\S+$/) { $cmd .= "$word "; }
  elsif ($word =~ /"/) { $cmd .= "'$word' "; }
  else { $cmd .= "\"$word\" "; }
}
my $logdir = $logfile;
$logdir =~ s{/[^/]*$}{} or $logdir = ".";
system("mkdir", "-p", $logdir);
my @pids;
my %log_of;
for my $job ($first .. $last) {
  my ($log, $this) = ($logfile, $cmd);
  if ($var ne "") { $log =~ s/$var/$job/g; $this =~ s/$var/$job/g; }
  $log_of{$job} = $log;
  my $pid = fork();
  die "run.pl: fork failed\n" unless defined $pid;
  if ($pid == 0) {
    open(my $fh, ">", $log) or die "run.pl: cannot write $log\n";
    print $fh "# $this\n# Started at " . localtime() . "\n";
    close($fh);
    my $ret = system("bash", "-c", "( $this ) >> '$log' 2>&1");
    my $code = $ret == -1 ? 1 : $ret >> 8;
    open($fh, ">>", $log);
    print $fh "# Ended (code $code) at " . localtime() . "\n";
    close($fh);
    exit($code == 0 ? 0 : 1);
  }
  push @pids, [$job, $pid];
}
my @failed;
for my $p (@pids) {
  waitpid($p->[1], 0);
  push @failed, $p->[0] if $? != 0;
}
if (@failed) {
  my $n = @pids;
  print STDERR "run.pl: " . scalar(@failed) . " / $n failed, log is in $log_of{$failed[0]}\n";
  exit 1;
}
exit 0;

using System.Diagnostics;
using MetaMae.Actors.Reporting;

namespace MetaMae.Actors.Tests;

/// <summary>A long run's promise: kill the process at any moment, resume, and end where an uninterrupted run ends.</summary>
public sealed class ProcessKillSpecs : TempDirTest
{
    private string[] PretrainArgs(string outDir) =>
    [
        "pretrain", "--set", "dataset.name=fashion-mnist", "--set", "dataset.root=embedded", "--set", "preset=tiny",
        "--set", "steps=40", "--set", "batch_size=16", "--set", "lr=0.001", "--set", "checkpoint_every=5", "--set", "keep_checkpoints=3",
        "--set", "threads=1", "--set", "device=cpu", "--set", "seed=3", "--set", "data_parallelism=2", "--set", "name=kill",
        "--out", outDir, "--quiet",
    ];

    [Fact]
    public void A_run_killed_with_sigkill_at_a_random_step_resumes_to_the_same_final_weights()
    {
        var straightOut = Path.Combine(Root, "straight");
        var (code, _, err) = TestRuns.RunCli(TimeSpan.FromMinutes(3), PretrainArgs(straightOut));
        Assert.True(code == 0, err);
        var straightDir = Directory.GetDirectories(straightOut).Single();

        var killedOut = Path.Combine(Root, "killed");
        int killAfter = new Random().Next(6, 34);
        using (var p = Process.Start(TestRuns.Cli(PretrainArgs(killedOut)))!)
        {
            var clock = Stopwatch.StartNew();
            long reached = 0;
            while (reached < killAfter && clock.Elapsed < TimeSpan.FromMinutes(2) && !p.HasExited)
            {
                Thread.Sleep(20);
                var dirs = Directory.Exists(killedOut) ? Directory.GetDirectories(killedOut) : [];
                if (dirs.Length == 1) reached = RunArtifacts.ReadSteps(Path.Combine(dirs[0], "metrics.jsonl")).Keys.DefaultIfEmpty(0).Max();
            }
            Assert.False(p.HasExited, "the run ended before it could be killed");
            p.Kill(); // SIGKILL: no shutdown hooks, no final checkpoint
            p.WaitForExit();
        }
        var killedDir = Directory.GetDirectories(killedOut).Single();
        Assert.False(File.Exists(Path.Combine(killedDir, "checkpoints", "step-00000040", "manifest.json")));

        var (resumeCode, resumeOut, resumeErr) = TestRuns.RunCli(TimeSpan.FromMinutes(3), "resume", killedDir, "--quiet");
        Assert.True(resumeCode == 0, resumeOut + resumeErr);
        Assert.Equal(TestRuns.FinalWeights(straightDir, 40), TestRuns.FinalWeights(killedDir, 40));
        // The run record knows the run completed.
        var (listCode, list, _) = TestRuns.RunCli(TimeSpan.FromMinutes(1), "runs", "--out", killedOut);
        Assert.Equal(0, listCode);
        Assert.Contains("completed", list);
        Assert.Contains("40/40", list);
    }
}

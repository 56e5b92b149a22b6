using System.Diagnostics;
using MetaMae.Actors.Reporting;

namespace MetaMae.Actors.Tests;

/// <summary>A long run's promise: kill the process at any moment, resume, and end where an uninterrupted run ends.</summary>
public sealed class ProcessKillSpecs : TempDirTest
{
    private string[] PretrainArgs(string outDir) =>
    [
        "pretrain", "--set", "dataset.name=fashion-mnist", "--set", "dataset.root=embedded", "--set", "preset=tiny",
        "--set", "steps=300", "--set", "batch_size=16", "--set", "lr=0.001", "--set", "checkpoint_every=20", "--set", "keep_checkpoints=3",
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
        int killAfter = new Random().Next(10, 280); // a run of 300 steps takes seconds: the kill lands mid-run
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
        Assert.False(File.Exists(Path.Combine(killedDir, "checkpoints", "step-00000300", "manifest.json")));

        var (resumeCode, resumeOut, resumeErr) = TestRuns.RunCli(TimeSpan.FromMinutes(3), "resume", killedDir, "--quiet");
        Assert.True(resumeCode == 0, resumeOut + resumeErr);
        Assert.Equal(TestRuns.FinalWeights(straightDir, 300), TestRuns.FinalWeights(killedDir, 300));
        // The run record knows the run completed.
        var (listCode, list, _) = TestRuns.RunCli(TimeSpan.FromMinutes(1), "runs", "--out", killedOut);
        Assert.Equal(0, listCode);
        Assert.Contains("completed", list);
        Assert.Contains("300/300", list);
    }
}

/// <summary>Ctrl-C (SIGINT) ends a run cleanly: a final complete checkpoint, status "stopped", and a resumable run.</summary>
public sealed class InterruptSpecs : TempDirTest
{
    [Fact]
    public async Task Sigint_stops_with_a_final_checkpoint_and_the_run_resumes_from_it()
    {
        var outDir = Path.Combine(Root, "int");
        string[] args =
        [
            "pretrain", "--set", "dataset.name=fashion-mnist", "--set", "preset=tiny", "--set", "steps=100000", "--set", "batch_size=16",
            "--set", "checkpoint_every=100000", "--set", "device=cpu", "--set", "name=int", "--out", outDir, "--quiet",
        ];
        using var p = Process.Start(TestRuns.Cli(args))!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        long reached = 0;
        while (reached < 5 && clock.Elapsed < TimeSpan.FromMinutes(2))
        {
            Thread.Sleep(50);
            var dirs = Directory.Exists(outDir) ? Directory.GetDirectories(outDir) : [];
            if (dirs.Length == 1) reached = RunArtifacts.ReadSteps(Path.Combine(dirs[0], "metrics.jsonl")).Keys.DefaultIfEmpty(0).Max();
        }
        Assert.True(reached >= 5, "the run did not get going");
        using (var kill = Process.Start("kill", ["-INT", p.Id.ToString()])!) kill.WaitForExit();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(1)), "the run did not stop after SIGINT");
        Assert.Contains("stopped at step", await stdout);
        var runDir = Directory.GetDirectories(outDir).Single();
        var last = Directory.GetDirectories(Path.Combine(runDir, "checkpoints")).Max()!;
        Assert.NotEqual("step-00000000", Path.GetFileName(last));
        Model.Checkpoints.Checkpoint.Verify(last);
        var (code, list, _) = TestRuns.RunCli(TimeSpan.FromMinutes(1), "runs", "--out", outDir);
        Assert.Equal(0, code);
        Assert.Contains("stopped", list);
        Assert.Contains("writing a final checkpoint", await stderr);
    }
}

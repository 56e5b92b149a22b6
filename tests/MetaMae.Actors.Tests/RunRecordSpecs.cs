using Akka.Actor;
using MetaMae.Actors.Checkpoints;
using MetaMae.Actors.Runs;
using MetaMae.Model.Checkpoints;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>One live owner per run directory; the record, the probes and the disk agree with what happened.</summary>
public sealed class RunRecordSpecs : MetaMaeTestKit
{
    private static long[] StepsOnDisk(string runDir) => new CheckpointStore(runDir, 1).List().Select(c => c.Step).Order().ToArray();

    [Fact]
    public async Task A_run_directory_is_owned_by_one_live_owner_and_a_second_is_refused_without_touching_it()
    {
        var dir = Path.Combine(Root, "owned");
        using (var held = RunDirectoryLock.Acquire(dir))
        {
            var busy = Assert.Throws<RunDirectoryBusyException>(() => RunDirectoryLock.Acquire(dir));
            Assert.Contains($"pid {Environment.ProcessId}", busy.Message);
            Assert.Contains(Environment.MachineName, busy.Message);
            var refused = await RunAsync(TestRuns.Tiny(Root), "owned");
            Assert.Equal(RunStatus.Failed, refused.Status);
            Assert.Contains("is in use by pid", refused.Error);
            Assert.False(File.Exists(Path.Combine(dir, "config.json")));
            Assert.False(File.Exists(Path.Combine(dir, "report.md")));
            Assert.False(File.Exists(Path.Combine(Root, "runs.db")));
        }
        using var next = RunDirectoryLock.Acquire(dir); // released with its owner
        Assert.Null(next.Previous); // a clean release leaves no owner behind
    }

    [Fact]
    public async Task Run_ids_are_unique_when_started_together_and_keep_the_readable_prefix()
    {
        var config = TestRuns.Tiny(Root) with { Name = "same" };
        var ids = Enumerable.Range(0, 2000).AsParallel().Select(_ => Cli.RunHost.NewRunId(config)).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Matches(@"^same-metamae-\d{8}-\d{6}-\d{3}-[0-9a-f]{8}$", id));
    }

    [Fact]
    public async Task Pruning_never_removes_a_checkpoint_a_probe_still_needs_and_the_record_matches_the_disk()
    {
        // Probes are slowed so that several checkpoints queue behind them while only one is kept.
        var config = TestRuns.Tiny(Root, steps: 10, every: 2, evaluate: true) with { KeepCheckpoints = 1 };
        config = config with { Evaluation = config.Evaluation with { Epochs = 2 } };
        FailPoints.Set("evaluator.probe", FailAction.Sleep, millis: 400);
        var result = await RunAsync(config, "pruned");
        Assert.Equal(RunStatus.Completed, result.Status);
        Assert.Null(result.Error);
        Assert.Equal(new long[] { 0, 2, 4, 6, 8, 10 }, result.Results.Select(r => r.Step).Order().ToArray());
        using var store = new RunStore(Path.Combine(Root, "runs.db"));
        var disk = StepsOnDisk(result.RunDirectory);
        Assert.Equal(disk, store.Checkpoints("pruned").Select(c => c.Step).Order().ToArray());
        Assert.True(disk.Length <= 3, $"kept {string.Join(",", disk)}: pruning stopped after the probes"); // last, step 0, best
        Assert.Contains(0L, disk);
        Assert.Contains(10L, disk);
    }

    [Fact]
    public async Task A_failed_probe_fails_the_run_and_resume_redoes_it_and_cleans_interrupted_writes()
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Epochs = 2 } };
        FailPoints.Set("evaluator.probe", FailAction.Throw, at: 8);
        var first = await RunAsync(config, "probes");
        FailPoints.Clear();
        Assert.Equal(RunStatus.Failed, first.Status);
        Assert.Contains("pretraining completed at step 8, but 1 probe(s) failed: step 8", first.Error);
        Assert.DoesNotContain(first.Results, r => r.Step == 8);

        // Leftovers of a kill inside checkpoint writes: a temporary directory, and a replaced checkpoint moved aside.
        var ckpts = Path.Combine(first.RunDirectory, "checkpoints");
        Directory.CreateDirectory(Path.Combine(ckpts, ".step-00000012.tmp-0123"));
        File.WriteAllText(Path.Combine(ckpts, ".step-00000012.tmp-0123", "model.safetensors"), "half");
        Directory.Move(Path.Combine(ckpts, "step-00000004"), Path.Combine(ckpts, ".step-00000004.old-4567"));

        var again = await RunAsync(config, "probes");
        Assert.Equal(RunStatus.Completed, again.Status);
        Assert.Equal(new long[] { 0, 4, 8 }, again.Results.Select(r => r.Step).Order().ToArray());
        Assert.Equal(new[] { "step-00000000", "step-00000004", "step-00000008" },
            Directory.GetDirectories(ckpts).Select(Path.GetFileName).Order().ToArray());
        Checkpoint.Verify(Path.Combine(ckpts, "step-00000004"));
        using var store = new RunStore(Path.Combine(Root, "runs.db"));
        Assert.Equal(3, store.Evaluations("probes").Count);
        Assert.Equal(RunStatusText.Parse("completed"), store.Runs().Single().Status);
    }

    [Fact]
    public async Task A_run_whose_every_checkpoint_is_corrupt_fails_unless_asked_to_start_over()
    {
        var config = TestRuns.Tiny(Root, steps: 4, every: 2);
        var first = await RunAsync(config, "corrupt");
        foreach (var dir in Directory.GetDirectories(Path.Combine(first.RunDirectory, "checkpoints")))
            File.WriteAllText(Path.Combine(dir, Checkpoint.WeightsFile), "garbage");
        var refused = await RunAsync(config with { Steps = 6 }, "corrupt");
        Assert.Equal(RunStatus.Failed, refused.Status);
        Assert.Contains("all 3 checkpoint(s)", refused.Error);
        Assert.Contains("--from-scratch", refused.Error);

        var over = await RunAsync(config with { Steps = 6 }, "corrupt", options: new RunStartOptions { FromScratch = true });
        Assert.Equal(RunStatus.Completed, over.Status);
        Assert.Equal(6, over.Step);
        var aside = Directory.GetDirectories(Path.Combine(first.RunDirectory, "corrupt-checkpoints")).Single();
        Assert.Equal(3, Directory.GetDirectories(aside).Length); // kept for inspection, not deleted
        var straight = await RunAsync(TestRuns.Tiny(Path.Combine(Root, "s"), steps: 6, every: 2), "straight");
        Assert.Equal(TestRuns.FinalWeights(straight.RunDirectory, 6), TestRuns.FinalWeights(over.RunDirectory, 6));
    }
}

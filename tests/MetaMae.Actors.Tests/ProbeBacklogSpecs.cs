using Akka.Actor;
using Akka.TestKit;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>
/// Issue 20, 7: probes that fall behind training, on real evaluators. The probe of the first checkpoint is held (a
/// fail point sleeps in it) while the rest of the run trains, so the others queue behind it whatever the machine's
/// speed: backlog latest skips the stale ones and says how many, with disk bounded; backlog all keeps every probe and, at a
/// stop, every checkpoint still owed one.
/// </summary>
public sealed class ProbeBacklogSpecs : MetaMaeTestKit
{
    private RunSpec Config(string dir, long steps, ProbeBacklog backlog)
    {
        var config = TestRuns.Tiny(Path.Combine(Root, dir), steps: steps, every: 4, evaluate: true) with { KeepCheckpoints = 2 };
        return config with { Evaluation = config.Evaluation with { IncludeRandomInit = false, Backlog = backlog } };
    }

    private static int CheckpointDirectories(string runDirectory) =>
        Directory.GetDirectories(Path.Combine(runDirectory, "checkpoints"), "step-*").Length;

    [Fact]
    public async Task Behind_training_the_latest_checkpoint_is_probed_the_stale_ones_are_skipped_and_counted_and_disk_stays_bounded()
    {
        var config = Config("latest", steps: 40, ProbeBacklog.Latest);
        FailPoints.Set("evaluator.probe", FailAction.Sleep, at: 4, millis: 8000);
        var progress = CreateTestProbe();
        var coordinator = Coordinator(config, "behind", Path.Combine(config.Out, "behind"), progress.Ref);
        coordinator.Tell(StartRun.Instance, TestActor);

        // Disk while the run trains: the newest keep_checkpoints, the one being probed and the one waiting, never more.
        int most = 0;
        string? runDirectory = null;
        await progress.FishForMessageAsync(m =>
        {
            if (m is CheckpointSaved c) most = Math.Max(most, CheckpointDirectories(runDirectory = Path.GetDirectoryName(Path.GetDirectoryName(c.Path))!));
            return m is CheckpointSaved { Final: true };
        }, TimeSpan.FromMinutes(2));
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromMinutes(2));
        Assert.Equal(RunStatus.Completed, result.Status);
        Assert.InRange(most, 1, config.KeepCheckpoints + 3);

        // Step 4 (held while training ran on) and the final step are probed; every other is skipped, and said.
        var probed = result.Results.Select(r => r.Step).Order().ToList();
        Assert.Equal(4, probed[0]);
        Assert.Equal(40, probed[^1]);
        using var record = RunRecord.Open(config.Out);
        var warnings = record.Warnings("behind").Select(w => w.Message).ToList();
        Assert.Contains(warnings, w => w.Contains("probes are behind training: the probe of step", StringComparison.Ordinal));
        var summary = Assert.Single(warnings, w => w.Contains("probe(s) of stale checkpoints were skipped", StringComparison.Ordinal));
        int skipped = int.Parse(summary[..summary.IndexOf(' ')], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(skipped >= 1, summary);
        Assert.Equal(10, probed.Count + skipped); // every checkpoint 4..40 probed or skipped, none lost without a word
        Assert.InRange(CheckpointDirectories(result.RunDirectory), 1, config.KeepCheckpoints + 1); // + the best
    }

    [Fact]
    public async Task With_backlog_all_a_stop_keeps_every_checkpoint_still_owed_a_probe_and_names_them()
    {
        var config = Config("all", steps: 10_000, ProbeBacklog.All);
        FailPoints.Set("evaluator.probe", FailAction.Sleep, at: 4, millis: 8000);
        var progress = CreateTestProbe();
        var coordinator = Coordinator(config, "kept", Path.Combine(config.Out, "kept"), progress.Ref);
        coordinator.Tell(StartRun.Instance, TestActor);
        await progress.FishForMessageAsync(m => m is CheckpointSaved { Step: 20 }, TimeSpan.FromMinutes(2));
        coordinator.Tell(new StopRun("test"));
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromMinutes(2));
        Assert.Equal(RunStatus.Stopped, result.Status);

        using var record = RunRecord.Open(config.Out);
        var warning = Assert.Single(record.Warnings("kept").Select(w => w.Message), w => w.Contains("were not run before the run ended", StringComparison.Ordinal));
        var named = System.Text.RegularExpressions.Regex.Match(warning, @"fashion-mnist at steps? ([\d, ]+)").Groups[1].Value
            .Split(", ").Select(long.Parse).ToList();
        // At least the probes queued behind the held one (8 .. 20) were owed; each named checkpoint is still on disk.
        Assert.Subset(named.ToHashSet(), new HashSet<long> { 8, 12, 16, 20 });
        foreach (var step in named)
            Assert.True(Directory.Exists(Path.Combine(result.RunDirectory, "checkpoints", $"step-{step:D8}")), $"step {step} was deleted");
    }
}

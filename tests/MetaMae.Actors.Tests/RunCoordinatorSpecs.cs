using Akka.Actor;
using MetaMae.Actors.Reporting;
using MetaMae.Actors.Runs;
using MetaMae.Model.Checkpoints;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

public sealed class RunCoordinatorSpecs : MetaMaeTestKit
{
    [Fact]
    public async Task A_run_completes_with_probe_results_for_random_init_and_pretrained_checkpoints()
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: true);
        var progress = CreateTestProbe();
        var result = await RunAsync(config, "probe-run", progress: progress.Ref);
        Assert.Equal(RunStatus.Completed, result.Status);
        Assert.Equal(8, result.Step);
        Assert.Equal(new long[] { 0, 4, 8 }, result.Results.Select(r => r.Step).Order().ToArray());
        Assert.All(result.Results, r => Assert.InRange(r.Value, 0.05, 1.0));
        await progress.FishForMessageAsync(m => m is StepReport { Step: 8 }, TimeSpan.FromSeconds(5));
        foreach (var f in new[] { "report.md", "metrics.jsonl", "config.json", "loss.png", "probe.png" })
            Assert.True(File.Exists(Path.Combine(result.RunDirectory, f)), $"{f} missing");
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(result.RunDirectory, "tensorboard")));
        using var store = new RunStore(Path.Combine(Root, "runs.db"));
        var row = Assert.Single(store.Runs());
        Assert.Equal((RunStatus.Completed, 8L), (row.Status, row.Step));
        Assert.Equal(3, store.Evaluations("probe-run").Count);
    }

    [Fact]
    public async Task Include_random_init_false_is_honoured_when_every_checkpoint_is_probed()
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { When = ProbeWhen.Every, IncludeRandomInit = false } };
        var result = await RunAsync(config, "no-random");
        Assert.Equal(RunStatus.Completed, result.Status);
        Assert.Equal(new long[] { 4, 8 }, result.Results.Select(r => r.Step).Order().ToArray());
        // Every result carries the raw-input anchor and how the probe was fitted.
        Assert.All(result.Results, r => Assert.NotNull(r.RawInput));
        Assert.All(result.Results, r => Assert.Contains("L-BFGS", r.Method));
    }

    [Fact]
    public async Task An_exception_in_the_learner_mid_run_is_survived_and_the_weights_equal_an_uninterrupted_run()
    {
        var straight = await RunAsync(TestRuns.Tiny(Path.Combine(Root, "a"), steps: 12, every: 4), "straight");
        FailPoints.Set("learner.step", FailAction.Throw, at: 7, times: 1);
        var faulty = await RunAsync(TestRuns.Tiny(Path.Combine(Root, "b"), steps: 12, every: 4), "faulty");
        Assert.Equal(RunStatus.Completed, faulty.Status);
        Assert.Equal(12, faulty.Step);
        Assert.Equal(TestRuns.FinalWeights(straight.RunDirectory, 12), TestRuns.FinalWeights(faulty.RunDirectory, 12));
        // Steps 5 and 6 were trained twice: once before the fault, again after resuming from step 4.
        var lines = File.ReadAllLines(Path.Combine(faulty.RunDirectory, "metrics.jsonl"));
        Assert.Equal(2, lines.Count(l => l.Contains("\"step\":5,")));
    }

    [Fact]
    public async Task A_learner_that_keeps_failing_fails_the_run_with_the_reason()
    {
        var config = TestRuns.Tiny(Root, steps: 12, every: 4) with { MaxLearnerRestarts = 2 };
        FailPoints.Set("learner.step", FailAction.Throw, at: 3);
        var result = await RunAsync(config, "broken");
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Contains("fail point 'learner.step' fired at 3", result.Error);
        Assert.Contains("after 2 restart(s)", result.Error);
    }

    [Fact]
    public async Task A_corrupted_newest_checkpoint_is_skipped_and_the_previous_one_used()
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4);
        var first = await RunAsync(config, "resumed");
        var newest = Path.Combine(first.RunDirectory, "checkpoints", "step-00000008", Checkpoint.WeightsFile);
        var bytes = File.ReadAllBytes(newest);
        bytes[^5] ^= 0x55;
        File.WriteAllBytes(newest, bytes);

        await EventFilter.Warning(contains: "step-00000008").ExpectOneAsync(async () =>
        {
            var again = await RunAsync(config with { Steps = 12 }, "resumed");
            Assert.Equal(RunStatus.Completed, again.Status);
            Assert.Equal(12, again.Step);
        });
        // Training resumed after step 4: step 5 appears twice in the metrics.
        var lines = File.ReadAllLines(Path.Combine(first.RunDirectory, "metrics.jsonl"));
        Assert.Equal(2, lines.Count(l => l.Contains("\"step\":5,")));
        // Same weights as a run that went straight to 12.
        var straight = await RunAsync(TestRuns.Tiny(Path.Combine(Root, "s"), steps: 12, every: 4), "straight12");
        Assert.Equal(TestRuns.FinalWeights(straight.RunDirectory, 12), TestRuns.FinalWeights(first.RunDirectory, 12));
    }

    [Fact]
    public async Task Stop_writes_a_final_checkpoint_and_reports_stopped()
    {
        var config = TestRuns.Tiny(Root, steps: 10_000, every: 1000);
        var progress = CreateTestProbe();
        var coordinator = Coordinator(config, "stopped", Path.Combine(Root, "stopped"), progress.Ref);
        coordinator.Tell(StartRun.Instance, TestActor);
        await progress.FishForMessageAsync(m => m is StepReport { Step: 5 }, TimeSpan.FromSeconds(60));
        coordinator.Tell(new StopRun("test"));
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromSeconds(60));
        Assert.Equal(RunStatus.Stopped, result.Status);
        Assert.InRange(result.Step, 5, 9000);
        var ckpt = Path.Combine(result.RunDirectory, "checkpoints", $"step-{result.Step:D8}");
        Checkpoint.Verify(ckpt);
        Assert.Equal(result.Step, RunArtifacts.ReadSteps(Path.Combine(result.RunDirectory, "metrics.jsonl")).Keys.Max());
    }

    [Fact]
    public async Task A_stop_that_comes_while_the_run_starts_still_ends_with_a_verified_final_checkpoint()
    {
        // Told right behind StartRun: the record is still opening, no learner placed. The learner is placed anyway and
        // stops as soon as it is ready, so "stopped" keeps its meaning: resumable from a checkpoint it wrote.
        var config = TestRuns.Tiny(Root, steps: 10_000, every: 1000);
        var coordinator = Coordinator(config, "early", Path.Combine(Root, "early"));
        coordinator.Tell(StartRun.Instance, TestActor);
        coordinator.Tell(new StopRun("test"));
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromSeconds(60));
        Assert.Equal(RunStatus.Stopped, result.Status);
        Checkpoint.Verify(Path.Combine(result.RunDirectory, "checkpoints", $"step-{result.Step:D8}"));
    }
}

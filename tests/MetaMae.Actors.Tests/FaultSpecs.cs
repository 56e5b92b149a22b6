using Akka.Actor;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>
/// Whatever fails, the run ends: a fault injected at each stage ends the run failed, with the stage and cause in the
/// result, the record and report.md, and the coordinator stops (nothing left waiting or running).
/// </summary>
public sealed class FaultSpecs : MetaMaeTestKit
{
    public static TheoryData<string, string, long?, bool, string> Stages => new()
    {
        // fail point, what the error must say, at, with probes, the stage named
        { "data.open", "fail point 'data.open'", null, false, "opening data set fashion-mnist" },
        { "data.stream-start", "fail point 'data.stream-start'", null, false, "starting the data stream failed" },
        { "data.batch", "fail point 'data.batch' fired at 3", 3, false, "data stream failed" },
        { "learner.step", "fail point 'learner.step' fired at 5", 5, false, "learner failed" },
        { "checkpoint.write", "fail point 'checkpoint.write' fired at 4", 4, false, "learner failed" },
        { "evaluator.probe", "fail point 'evaluator.probe' fired at 8", 8, true, "probe(s) failed" },
        { "artifacts.write", "fail point 'artifacts.write' fired at 6", 6, false, "writing metrics.jsonl" },
        { "checkpoint.prune", "fail point 'checkpoint.prune'", null, false, "pruning checkpoints failed" },
        { "record.write", "fail point 'record.write'", null, false, "opening the run record" },
    };

    [Theory]
    [MemberData(nameof(Stages))]
    public async Task A_fault_at_any_stage_ends_the_run_failed_with_the_cause_named(string point, string cause, long? at, bool probes, string stage)
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: probes) with { MaxLearnerRestarts = 1 };
        FailPoints.Set(point, FailAction.Throw, at: at);
        var dir = Path.Combine(Root, "run");
        var coordinator = Coordinator(config, "run", dir);
        Watch(coordinator);
        coordinator.Tell(StartRun.Instance, TestActor);
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromMinutes(2));
        await ExpectTerminatedAsync(coordinator, TimeSpan.FromSeconds(10));
        FailPoints.Clear();

        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Contains(cause, result.Error);
        Assert.Contains(stage, result.Error);
        Assert.Contains(cause, File.ReadAllText(Path.Combine(dir, "report.md")));
        using var store = new RunStore(Path.Combine(Root, "runs.db"));
        if (point == "record.write")
        {
            Assert.Empty(store.Runs()); // the record itself failed: the result and report.md carry the cause
        }
        else
        {
            var row = Assert.Single(store.Runs());
            Assert.Equal((RunStatus.Failed, result.Error), (row.Status, store.Error(row.Id)));
        }
        // The directory is free again: the next process can take it.
        using var again = RunDirectoryLock.Acquire(dir);
    }

    [Fact]
    public async Task A_run_record_of_random_bytes_fails_the_run_naming_the_file_and_writes_nothing_else()
    {
        var db = Path.Combine(Root, "runs.db");
        var junk = new byte[64 * 1024];
        new Random(5).NextBytes(junk);
        File.WriteAllBytes(db, junk);
        var coordinator = Coordinator(TestRuns.Tiny(Root), "junk", Path.Combine(Root, "junk"));
        coordinator.Tell(StartRun.Instance, TestActor);
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromSeconds(60));
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Contains(db, result.Error);
        Assert.Contains("not an SQLite database", result.Error);
        Assert.Equal(junk, File.ReadAllBytes(db)); // the user's file is left as it was
        Assert.Contains("not an SQLite database", File.ReadAllText(Path.Combine(Root, "junk", "report.md")));
    }

    [Fact]
    public async Task An_evaluator_that_crashes_neither_stops_the_stream_nor_hangs_the_run_and_its_probe_is_recorded_failed()
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Epochs = 2 } };
        FailPoints.Set("evaluator.crash", FailAction.Throw, at: 0, times: 1);
        var coordinator = Coordinator(config, "crash", Path.Combine(Root, "crash"));
        coordinator.Tell(StartRun.Instance, TestActor);
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromMinutes(2));
        Assert.Equal(8, result.Step); // training went on to the end: the stream was not stopped
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Contains("pretraining completed at step 8, but 1 probe(s) failed: step 0 on fashion-mnist: the evaluator crashed: fail point 'evaluator.crash' fired at 0", result.Error);
        Assert.Equal(new long[] { 4, 8 }, result.Results.Select(r => r.Step).Order().ToArray()); // a fresh evaluator took the rest
    }

    [Fact]
    public async Task A_learner_host_that_cannot_start_the_learner_fails_the_run_at_once_instead_of_leaving_it_waiting()
    {
        // The host's handler throws (its supervisor would only log it): the coordinator must hear why, not wait out
        // placement_timeout_seconds for a learner that will never report.
        var config = TestRuns.Tiny(Root, steps: 8, every: 4) with { PlacementTimeoutSeconds = 600 };
        FailPoints.Set("learner-host.start", FailAction.Throw);
        var coordinator = Coordinator(config, "host", Path.Combine(Root, "host"));
        coordinator.Tell(StartRun.Instance, TestActor);
        var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromSeconds(30));
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Contains("the learner node could not start the learner: fail point 'learner-host.start'", result.Error);
    }

    [Fact]
    public async Task A_learner_that_always_fails_is_restarted_at_most_the_configured_times()
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4) with { MaxLearnerRestarts = 3 };
        FailPoints.Set("learner.step", FailAction.Throw, at: 2);
        var coordinator = Coordinator(config, "r", Path.Combine(Root, "r"));
        await EventFilter.Warning(contains: "restart 4 of").ExpectAsync(0, async () =>
        {
            coordinator.Tell(StartRun.Instance, TestActor);
            var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromMinutes(2));
            Assert.Equal(RunStatus.Failed, result.Status);
            Assert.Contains("after 3 restart(s)", result.Error);
        });
    }
}

using Akka.Actor;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>
/// Issue 20, 8: the run record's PostgreSQL server restarts under a running run (a real server, stopped with pg_ctl's
/// fast shutdown as an operator's restart does). Every wait is on an event: a step, a warning, the run's end.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class RecordOutageSpecs(PostgresServer server) : MetaMaeTestKit
{
    private async Task<T> Heard<T>(Akka.TestKit.TestProbe progress, Func<T, bool> when, TimeSpan within) where T : class =>
        (T)await progress.FishForMessageAsync(m => m is T t && when(t), within);

    [SkippableFact]
    public async Task A_record_outage_is_ridden_out_training_goes_on_and_every_write_lands_when_the_server_is_back()
    {
        Skip.If(server.Unavailable is not null, server.Unavailable);
        var connection = server.NewDatabase($"outage_{Guid.NewGuid():N}");
        var config = TestRuns.Tiny(Root, steps: 100_000, every: 20) with { RecordOutageSeconds = 300 };
        Environment.SetEnvironmentVariable(RunRecord.Variable, connection);
        bool stopped = false;
        RunFinished result;
        try
        {
            var progress = CreateTestProbe();
            var coordinator = Coordinator(config, "outage", Path.Combine(Root, "outage"), progress.Ref);
            coordinator.Tell(StartRun.Instance, TestActor);
            await Heard<StepReport>(progress, s => s.Step >= 20, TimeSpan.FromMinutes(2));
            server.Stop();
            stopped = true;
            var down = await Heard<RunWarning>(progress, w => w.Message.Contains("the run record cannot be reached", StringComparison.Ordinal), TimeSpan.FromMinutes(1));
            Assert.Contains("record_outage_seconds (300 s)", down.Message);
            // Training goes on while the record is down: two more checkpoints, with steps recorded and a checkpoint to add.
            await Heard<CheckpointSaved>(progress, c => c.Step >= down.Step + 40, TimeSpan.FromMinutes(2));
            server.Start();
            stopped = false;
            var back = await Heard<RunWarning>(progress, w => w.Message.Contains("the run record is back after", StringComparison.Ordinal), TimeSpan.FromMinutes(1));
            Assert.Matches(@"the \d+ write\(s\) that waited are written", back.Message);
            coordinator.Tell(new StopRun("test"));
            result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromMinutes(2));
        }
        finally
        {
            Environment.SetEnvironmentVariable(RunRecord.Variable, null);
            if (stopped) server.Start();
        }
        Assert.True(result.Status == RunStatus.Stopped, result.Error);

        // The record holds the whole run, the outage included: its end, its checkpoints as on disk, both warnings.
        using var record = new PostgresRunStore(connection);
        var run = Assert.Single(record.Runs());
        Assert.Equal((RunStatus.Stopped, result.Step), (run.Status, run.Step));
        var onDisk = Directory.GetDirectories(Path.Combine(result.RunDirectory, "checkpoints"), "step-*")
            .Select(d => long.Parse(Path.GetFileName(d)[5..], System.Globalization.CultureInfo.InvariantCulture)).Order().ToList();
        Assert.Equal(onDisk, record.Checkpoints("outage").Select(c => c.Step).Order().ToList());
        var warnings = record.Warnings("outage").Select(w => w.Message).ToList();
        Assert.Contains(warnings, w => w.Contains("cannot be reached", StringComparison.Ordinal));
        Assert.Contains(warnings, w => w.Contains("is back after", StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task An_outage_longer_than_record_outage_seconds_fails_the_run_naming_the_bound()
    {
        Skip.If(server.Unavailable is not null, server.Unavailable);
        var connection = server.NewDatabase($"outage_{Guid.NewGuid():N}");
        var config = TestRuns.Tiny(Root, steps: 100_000, every: 1000) with { RecordOutageSeconds = 3 };
        Environment.SetEnvironmentVariable(RunRecord.Variable, connection);
        bool stopped = false;
        try
        {
            var progress = CreateTestProbe();
            var coordinator = Coordinator(config, "too-long", Path.Combine(Root, "too-long"), progress.Ref);
            coordinator.Tell(StartRun.Instance, TestActor);
            await Heard<StepReport>(progress, s => s.Step >= 10, TimeSpan.FromMinutes(2));
            server.Stop();
            stopped = true;
            var result = await ExpectMsgAsync<RunFinished>(TimeSpan.FromMinutes(2));
            Assert.Equal(RunStatus.Failed, result.Status);
            Assert.Contains("longer than record_outage_seconds (3 s)", result.Error);
        }
        finally
        {
            Environment.SetEnvironmentVariable(RunRecord.Variable, null);
            if (stopped) server.Start();
        }
    }
}

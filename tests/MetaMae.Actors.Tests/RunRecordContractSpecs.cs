using System.Data.Common;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace MetaMae.Actors.Tests;

/// <summary>
/// What every run record backend must do, run against each: SQLite (one machine) and a real PostgreSQL server (the
/// cluster's record).
/// </summary>
public abstract class RunRecordContract : TempDirTest
{
    /// <summary>A handle on the record under test (the same record each call within a spec).</summary>
    protected abstract IRunRecord Open();

    /// <summary>Raw SQL against the same record, behind the program's back.</summary>
    protected abstract DbConnection Raw();

    protected virtual void SkipUnlessAvailable() { }

    private static EvaluationResult Eval(string run, long step, double value) =>
        new(run, step, "fashion-mnist", "accuracy", value, 1, 100, 50, $"/runs/{run}/checkpoints/step-{step:D8}");

    [SkippableFact]
    public void A_run_is_recorded_from_start_to_finish_with_its_checkpoints_and_evaluations()
    {
        SkipUnlessAvailable();
        using var record = Open();
        record.StartRun("r1", "first", 100, "/runs/r1", "{\"steps\":100}");
        record.UpdateStep("r1", 40);
        foreach (var s in new long[] { 0, 20, 40 }) record.AddCheckpoint("r1", s, $"/runs/r1/checkpoints/step-{s:D8}", valid: true);
        record.AddCheckpoint("r1", 40, "/runs/r1/checkpoints/step-00000040.b", valid: false); // replaced, not duplicated
        record.RemoveCheckpoint("r1", 0);
        record.AddEvaluation(Eval("r1", 20, 0.61));
        record.AddEvaluation(Eval("r1", 20, 0.63)); // a probe redone
        record.AddEvaluation(Eval("r1", 40, 0.70));
        record.AddWarning("r1", 30, "the learner group re-forms from the latest checkpoint: replica 1 left group 1: its node left");
        record.AddWarning("r1", 35, "second");
        record.FinishRun("r1", RunStatus.Failed, 45, "data stream failed: too many bad records");

        var run = Assert.Single(record.Runs());
        Assert.Equal(("r1", "first", RunStatus.Failed, 45L, 100L, "/runs/r1"), (run.Id, run.Name, run.Status, run.Step, run.TotalSteps, run.Directory));
        Assert.Equal("{\"steps\":100}", record.Config("r1"));
        Assert.Equal("data stream failed: too many bad records", record.Error("r1"));
        Assert.Equal(new[] { (20L, "/runs/r1/checkpoints/step-00000020", true), (40L, "/runs/r1/checkpoints/step-00000040.b", false) }, record.Checkpoints("r1"));
        Assert.Equal(new[] { (20L, 0.63), (40L, 0.70) }, record.Evaluations("r1").Select(e => (e.Step, e.Value)));
        Assert.Equal(new[] { (30L, "the learner group re-forms from the latest checkpoint: replica 1 left group 1: its node left"), (35L, "second") },
            record.Warnings("r1"));
        Assert.Equal(2, RunRecord.Summaries(record).Single().Warnings);
        Assert.Null(record.Config("unknown"));
        Assert.Empty(record.Checkpoints("unknown"));
        Assert.Empty(record.Warnings("unknown"));
    }

    [SkippableFact]
    public void A_restarted_run_is_running_again_without_its_old_error_and_keeps_its_history()
    {
        SkipUnlessAvailable();
        using var record = Open();
        record.StartRun("r2", "again", 50, "/runs/r2", "{}");
        record.AddEvaluation(Eval("r2", 10, 0.5));
        record.FinishRun("r2", RunStatus.Aborted, 12, "stopped without a final checkpoint");
        record.StartRun("r2", "again", 50, "/runs/r2", "{}");
        var run = Assert.Single(record.Runs());
        Assert.Equal(RunStatus.Running, run.Status);
        Assert.Equal(12, run.Step);
        Assert.Null(record.Error("r2"));
        Assert.Single(record.Evaluations("r2"));
    }

    [SkippableFact]
    public void Checkpoints_are_synchronised_with_the_disk()
    {
        SkipUnlessAvailable();
        using var record = Open();
        record.StartRun("r3", "sync", 50, "/runs/r3", "{}");
        record.AddCheckpoint("r3", 10, "/a/10", true);
        record.AddCheckpoint("r3", 20, "/a/20", true);
        record.SyncCheckpoints("r3", [(20, "/a/20"), (30, "/a/30")]);
        Assert.Equal(new long[] { 20, 30 }, record.Checkpoints("r3").Select(c => c.Step));
    }

    [SkippableFact]
    public void Writes_through_one_handle_are_seen_by_another_and_survive_reopening()
    {
        SkipUnlessAvailable();
        using (var writer = Open())
        using (var reader = Open()) // a second coordinator, or `metamae runs`
        {
            writer.StartRun("r4", "shared", 10, "/runs/r4", "{}");
            writer.UpdateStep("r4", 7);
            Assert.Equal(7, Assert.Single(reader.Runs()).Step);
        }
        using var again = Open();
        Assert.Equal(7, Assert.Single(again.Runs()).Step);
        Assert.Equal(SqlRunRecord.SchemaVersion, ((SqlRunRecord)again).StoredSchemaVersion());
    }

    [SkippableFact]
    public void A_record_written_by_a_newer_program_is_refused_naming_both_schema_versions()
    {
        SkipUnlessAvailable();
        using (var record = Open()) record.StartRun("r5", "old", 10, "/runs/r5", "{}");
        using (var raw = Raw())
        {
            raw.Open();
            using var cmd = raw.CreateCommand();
            cmd.CommandText = "INSERT INTO schema_version (version) VALUES (99)";
            cmd.ExecuteNonQuery();
        }
        var e = Assert.Throws<RunStoreException>(() => Open());
        Assert.Contains("version 99", e.Message);
        Assert.Contains($"up to {SqlRunRecord.SchemaVersion}", e.Message);
    }
}

public sealed class SqliteRecordSpecs : RunRecordContract
{
    private string File => Path.Combine(Root, RunRecord.FileName);
    protected override IRunRecord Open() => new RunStore(File);
    protected override DbConnection Raw() => new SqliteConnection($"Data Source={File};Pooling=false");

    [Fact]
    public void A_record_from_before_schema_versions_is_adopted_as_version_1()
    {
        using (var raw = Raw())
        {
            raw.Open();
            using var cmd = raw.CreateCommand();
            cmd.CommandText = """
                CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0,
                  total_steps INTEGER NOT NULL, directory TEXT NOT NULL, config TEXT NOT NULL, error TEXT, created TEXT NOT NULL, updated TEXT NOT NULL);
                INSERT INTO runs VALUES ('old', 'old', 'completed', 5, 5, '/runs/old', '{}', NULL, '2026-11-01', '2026-11-01');
                """;
            cmd.ExecuteNonQuery();
        }
        using var record = (SqlRunRecord)Open();
        Assert.Equal(SqlRunRecord.SchemaVersion, record.StoredSchemaVersion()); // adopted as version 1, then migrated
        Assert.Equal("old", Assert.Single(record.Runs()).Id);
        record.AddWarning("old", 5, "recorded after the migration");
        Assert.Single(record.Warnings("old"));
    }
}

[Collection(PostgresCollection.Name)]
public sealed class PostgresRecordSpecs(PostgresServer server) : RunRecordContract
{
    private readonly string connection = server.Unavailable is null ? server.NewDatabase($"spec_{Guid.NewGuid():N}") : "";

    protected override void SkipUnlessAvailable() => Skip.If(server.Unavailable is not null, server.Unavailable);
    protected override IRunRecord Open() => new PostgresRunStore(connection);
    protected override DbConnection Raw() => new NpgsqlConnection(connection);

    [SkippableFact]
    public void A_url_names_the_record_without_its_password_and_an_unreachable_server_is_a_clear_error()
    {
        SkipUnlessAvailable();
        var database = new NpgsqlConnectionStringBuilder(connection).Database;
        using (var byUrl = new PostgresRunStore($"postgresql://metamae:secret@127.0.0.1:{server.Port}/{database}"))
            Assert.Equal($"postgresql://127.0.0.1:{server.Port}/{database}", byUrl.Path);
        var down = Assert.Throws<RunStoreException>(() => new PostgresRunStore($"postgresql://metamae:secret@127.0.0.1:{Cli.Bench.Loopback.FreePort()}/x"));
        Assert.Contains("run record postgresql://127.0.0.1:", down.Message);
        Assert.DoesNotContain("secret", down.Message);
    }

    [SkippableFact]
    public async Task A_run_coordinated_with_its_record_in_PostgreSQL_is_recorded_there_with_checkpoints_and_probes()
    {
        SkipUnlessAvailable();
        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Epochs = 2 } };
        Environment.SetEnvironmentVariable(RunRecord.Variable, connection);
        try
        {
            await using var cluster = new Cluster.InProcessCluster();
            await cluster.Add(Roles.All);
            var result = await cluster.Run(0, config, "in-postgres", TimeSpan.FromMinutes(3));
            Assert.True(result.Status == RunStatus.Completed, result.Error);
        }
        finally
        {
            Environment.SetEnvironmentVariable(RunRecord.Variable, null);
        }
        Assert.False(System.IO.File.Exists(Path.Combine(Root, RunRecord.FileName)), "the run wrote an SQLite record too");
        using var record = Open();
        var run = Assert.Single(record.Runs());
        Assert.Equal((RunStatus.Completed, 8L), (run.Status, run.Step));
        Assert.Equal(new long[] { 0, 4, 8 }, record.Checkpoints("in-postgres").Select(c => c.Step));
        Assert.Equal(new long[] { 0, 4, 8 }, record.Evaluations("in-postgres").Select(e => e.Step));
    }
}

using Microsoft.Data.Sqlite;
using MetaMae.Protocol;

namespace MetaMae.Actors.Runs;

/// <summary>
/// The durable record of runs: what every coordinator writes and a coordinator that takes over reads. One machine
/// (or several sharing a directory) keeps it in SQLite (<see cref="RunStore"/>); a deployment may put it in a database
/// server behind the same interface. Every method throws an <see cref="IOException"/> naming the record on failure.
/// </summary>
public interface IRunRecord : IDisposable
{
    string Path { get; }
    void StartRun(string id, string name, long totalSteps, string directory, string configJson);
    void UpdateStep(string id, long step);
    void FinishRun(string id, RunStatus status, long step, string? error);
    void AddCheckpoint(string id, long step, string path, bool valid);
    void RemoveCheckpoint(string id, long step);
    void SyncCheckpoints(string id, IEnumerable<(long Step, string Path)> onDisk);
    void AddEvaluation(EvaluationResult r);
    IReadOnlyList<RunRow> Runs();
    string? Config(string id);
    string? Error(string id);
    IReadOnlyList<EvaluationResult> Evaluations(string id);
    IReadOnlyList<(long Step, string Path, bool Valid)> Checkpoints(string id);
}

/// <summary>Where a runs directory's record lives.</summary>
public static class RunRecord
{
    /// <summary>Every run of <paramref name="record"/>, as `metamae runs` shows them; <paramref name="live"/> names runs being coordinated now.</summary>
    public static List<RunSummary> Summaries(IRunRecord record, IReadOnlySet<string>? live = null) =>
        record.Runs().Select(r =>
        {
            var latest = record.Evaluations(r.Id).GroupBy(e => e.Dataset).Select(g => g.MaxBy(e => e.Step)!)
                .Select(e => FormattableString.Invariant($"{e.Dataset} {e.Metric} {e.Value:F3} @{e.Step}"));
            return new RunSummary(r.Id, r.Status, r.Step, r.TotalSteps, record.Checkpoints(r.Id).Count, string.Join("; ", latest),
                r.Updated.Length >= 19 ? r.Updated[..19] : r.Updated, r.Directory, live?.Contains(r.Id) == true);
        }).ToList();

    public const string FileName = "runs.db";

    /// <summary>The record of <paramref name="runsDirectory"/> (RUNS/runs.db, SQLite).</summary>
    public static IRunRecord Open(string runsDirectory) => new RunStore(System.IO.Path.Combine(runsDirectory, FileName));

    /// <summary>The runs directory a run directory belongs to.</summary>
    public static string RunsDirectoryOf(string runDirectory) => System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(runDirectory))!;
}

/// <summary>One row of the runs table.</summary>
public sealed record RunRow(string Id, string Name, RunStatus Status, long Step, long TotalSteps, string Directory, string Created, string Updated);

/// <summary>
/// The durable run record in SQLite (RUNS_ROOT/runs.db): runs, checkpoints (path, step, checksum state, valid) and
/// evaluations, so `metamae runs` lists them and a resumed run knows where it was.
/// </summary>
public sealed class RunStore : IRunRecord
{
    private readonly SqliteConnection connection;
    private readonly Lock gate = new();

    public string Path { get; }

    public RunStore(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path, Pooling = false }.ToString());
        try
        {
            connection.Open();
            CreateSchema();
        }
        catch (SqliteException e)
        {
            connection.Dispose();
            throw new RunStoreException(Path, e);
        }
    }

    private void CreateSchema() =>
        Execute("""
            PRAGMA journal_mode = WAL;
            PRAGMA busy_timeout = 5000;
            CREATE TABLE IF NOT EXISTS runs (
              id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0,
              total_steps INTEGER NOT NULL, directory TEXT NOT NULL, config TEXT NOT NULL, error TEXT,
              created TEXT NOT NULL, updated TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS checkpoints (
              run_id TEXT NOT NULL, step INTEGER NOT NULL, path TEXT NOT NULL, valid INTEGER NOT NULL, created TEXT NOT NULL,
              PRIMARY KEY (run_id, step));
            CREATE TABLE IF NOT EXISTS evaluations (
              run_id TEXT NOT NULL, step INTEGER NOT NULL, dataset TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
              checkpoint TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (run_id, step, dataset));
            """);

    private static string Now => DateTimeOffset.UtcNow.ToString("O");

    private void Execute(string sql, params (string, object?)[] args)
    {
        lock (gate)
        {
            Protocol.FailPoints.Hit("record.write");
            using var cmd = connection.CreateCommand();
            cmd.CommandText = sql;
            foreach (var (name, value) in args) cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
            try
            {
                cmd.ExecuteNonQuery();
            }
            catch (SqliteException e)
            {
                throw new RunStoreException(Path, e);
            }
        }
    }

    public void StartRun(string id, string name, long totalSteps, string directory, string configJson) =>
        Execute("""
            INSERT INTO runs (id, name, status, step, total_steps, directory, config, created, updated)
            VALUES ($id, $name, 'running', 0, $total, $dir, $config, $now, $now)
            ON CONFLICT(id) DO UPDATE SET status = 'running', error = NULL, updated = $now
            """, ("$id", id), ("$name", name), ("$total", totalSteps), ("$dir", directory), ("$config", configJson), ("$now", Now));

    public void UpdateStep(string id, long step) =>
        Execute("UPDATE runs SET step = $step, updated = $now WHERE id = $id", ("$id", id), ("$step", step), ("$now", Now));

    public void FinishRun(string id, RunStatus status, long step, string? error) =>
        Execute("UPDATE runs SET status = $status, step = $step, error = $error, updated = $now WHERE id = $id",
            ("$id", id), ("$status", status.Text()), ("$step", step), ("$error", error), ("$now", Now));

    public void AddCheckpoint(string id, long step, string path, bool valid) =>
        Execute("INSERT OR REPLACE INTO checkpoints (run_id, step, path, valid, created) VALUES ($id, $step, $path, $valid, $now)",
            ("$id", id), ("$step", step), ("$path", path), ("$valid", valid ? 1 : 0), ("$now", Now));

    public void RemoveCheckpoint(string id, long step) =>
        Execute("DELETE FROM checkpoints WHERE run_id = $id AND step = $step", ("$id", id), ("$step", step));

    /// <summary>Makes the checkpoints table match the disk: rows of vanished directories go, checkpoints on disk are listed.</summary>
    public void SyncCheckpoints(string id, IEnumerable<(long Step, string Path)> onDisk)
    {
        var disk = onDisk.ToDictionary(c => c.Step, c => c.Path);
        foreach (var (step, _, _) in Checkpoints(id).Where(c => !disk.ContainsKey(c.Step))) RemoveCheckpoint(id, step);
        foreach (var (step, path) in disk) AddCheckpoint(id, step, path, valid: true);
    }

    public void AddEvaluation(EvaluationResult r) =>
        Execute("INSERT OR REPLACE INTO evaluations (run_id, step, dataset, metric, value, checkpoint, created) VALUES ($id, $step, $ds, $metric, $value, $ckpt, $now)",
            ("$id", r.RunId), ("$step", r.Step), ("$ds", r.Dataset), ("$metric", r.Metric), ("$value", r.Value), ("$ckpt", r.Checkpoint), ("$now", Now));

    public IReadOnlyList<RunRow> Runs()
    {
        lock (gate)
        {
            using var cmd = connection.CreateCommand();
            cmd.CommandText = "SELECT id, name, status, step, total_steps, directory, created, updated FROM runs ORDER BY created";
            using var r = cmd.ExecuteReader();
            var rows = new List<RunRow>();
            while (r.Read())
                rows.Add(new RunRow(r.GetString(0), r.GetString(1), RunStatusText.Parse(r.GetString(2)), r.GetInt64(3), r.GetInt64(4), r.GetString(5), r.GetString(6), r.GetString(7)));
            return rows;
        }
    }

    /// <summary>The run's config as recorded when it started (JSON), or null.</summary>
    public string? Config(string id) => RunText("config", id);

    /// <summary>Why the run failed, as recorded (null when it did not).</summary>
    public string? Error(string id) => RunText("error", id);

    /// <summary>One text column of a run's row (the column is one of this class's own names, never input).</summary>
    private string? RunText(string column, string id)
    {
        lock (gate)
        {
            using var cmd = connection.CreateCommand();
            cmd.CommandText = $"SELECT {column} FROM runs WHERE id = $id";
            cmd.Parameters.AddWithValue("$id", id);
            return cmd.ExecuteScalar() as string;
        }
    }

    public IReadOnlyList<EvaluationResult> Evaluations(string id)
    {
        lock (gate)
        {
            using var cmd = connection.CreateCommand();
            cmd.CommandText = "SELECT step, dataset, metric, value, checkpoint FROM evaluations WHERE run_id = $id ORDER BY step, dataset";
            cmd.Parameters.AddWithValue("$id", id);
            using var r = cmd.ExecuteReader();
            var rows = new List<EvaluationResult>();
            while (r.Read()) rows.Add(new EvaluationResult(id, r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetDouble(3), 0, 0, 0, r.GetString(4)));
            return rows;
        }
    }

    public IReadOnlyList<(long Step, string Path, bool Valid)> Checkpoints(string id)
    {
        lock (gate)
        {
            using var cmd = connection.CreateCommand();
            cmd.CommandText = "SELECT step, path, valid FROM checkpoints WHERE run_id = $id ORDER BY step";
            cmd.Parameters.AddWithValue("$id", id);
            using var r = cmd.ExecuteReader();
            var rows = new List<(long, string, bool)>();
            while (r.Read()) rows.Add((r.GetInt64(0), r.GetString(1), r.GetInt64(2) == 1));
            return rows;
        }
    }

    public void Dispose() => connection.Dispose();
}

/// <summary>The run record cannot be opened or written (not a database, disk full, read-only): named with its path.</summary>
public sealed class RunStoreException(string path, SqliteException inner)
    : IOException($"run record {path} is not usable: {inner.Message.TrimEnd('.')}" +
                  (inner.SqliteErrorCode == 26 ? " (the file is not an SQLite database; move it aside to start a new record)" : ""), inner);

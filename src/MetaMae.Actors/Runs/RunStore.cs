using System.Data.Common;
using Microsoft.Data.Sqlite;
using MetaMae.Protocol;
using Npgsql;

namespace MetaMae.Actors.Runs;

/// <summary>
/// The durable record of runs: what every coordinator writes and a coordinator that takes over reads. One machine
/// (or several sharing a directory) keeps it in SQLite (<see cref="RunStore"/>); a cluster keeps it in PostgreSQL
/// (<see cref="PostgresRunStore"/>), so it survives any node. Every method throws an <see cref="IOException"/> naming
/// the record on failure.
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
    /// <summary>Records something the run survived but a user must hear of (a learner group re-formed, and why).</summary>
    void AddWarning(string id, long step, string message);
    IReadOnlyList<(long Step, string Message)> Warnings(string id);
}

/// <summary>Where a runs directory's record lives.</summary>
public static class RunRecord
{
    /// <summary>
    /// The environment variable naming a PostgreSQL record (postgresql://user:password@host:port/database, or an Npgsql
    /// connection string); unset, each runs directory keeps its own SQLite record.
    /// </summary>
    public const string Variable = "METAMAE_RECORD";

    /// <summary>Every run of <paramref name="record"/>, as `metamae runs` shows them; <paramref name="live"/> names runs being coordinated now.</summary>
    public static List<RunSummary> Summaries(IRunRecord record, IReadOnlySet<string>? live = null) =>
        record.Runs().Select(r =>
        {
            var latest = record.Evaluations(r.Id).GroupBy(e => e.Dataset).Select(g => g.MaxBy(e => e.Step)!)
                .Select(e => FormattableString.Invariant($"{e.Dataset} {e.Metric} {e.Value:F3} @{e.Step}"));
            return new RunSummary(r.Id, r.Status, r.Step, r.TotalSteps, record.Checkpoints(r.Id).Count, string.Join("; ", latest),
                r.Updated.Length >= 19 ? r.Updated[..19] : r.Updated, r.Directory, live?.Contains(r.Id) == true, record.Warnings(r.Id).Count);
        }).ToList();

    public const string FileName = "runs.db";

    /// <summary>The record of <paramref name="runsDirectory"/>: PostgreSQL when METAMAE_RECORD names one, else RUNS/runs.db (SQLite).</summary>
    public static IRunRecord Open(string runsDirectory) =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } server
            ? new PostgresRunStore(server)
            : new RunStore(System.IO.Path.Combine(runsDirectory, FileName));

    /// <summary>Whether there is a record to read for <paramref name="runsDirectory"/> (a PostgreSQL one always is).</summary>
    public static bool Exists(string runsDirectory) =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } || File.Exists(System.IO.Path.Combine(runsDirectory, FileName));

    /// <summary>Where the record of <paramref name="runsDirectory"/> is, for messages.</summary>
    public static string Describe(string runsDirectory) =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } server ? PostgresRunStore.Parse(server).Name : System.IO.Path.Combine(runsDirectory, FileName);

    /// <summary>The runs directory a run directory belongs to.</summary>
    public static string RunsDirectoryOf(string runDirectory) => System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(runDirectory))!;
}

/// <summary>One row of the runs table.</summary>
public sealed record RunRow(string Id, string Name, RunStatus Status, long Step, long TotalSteps, string Directory, string Created, string Updated);

/// <summary>
/// The run record in SQL, one implementation for both backends (ADO.NET, standard SQL with ON CONFLICT upserts, which
/// SQLite and PostgreSQL both speak): runs, checkpoints (path, step, valid) and evaluations, so `metamae runs` lists
/// them and a coordinator that takes over knows where each run was. The schema is created and migrated by the
/// program and carries a version; a record written by a newer program (a higher version) is refused, not guessed at.
/// </summary>
internal abstract class SqlRunRecord : IRunRecord
{
    /// <summary>The schema this program writes. Add a migration to <see cref="Migrations"/> to raise it.</summary>
    public const int SchemaVersion = 2;

    private readonly DbConnection connection;
    private readonly Lock gate = new();

    public string Path { get; }

    protected SqlRunRecord(DbConnection connection, string path)
    {
        this.connection = connection;
        Path = path;
    }

    /// <summary>Column types per backend.</summary>
    protected abstract string Integer { get; }
    protected abstract string Real { get; }

    /// <summary>Serialises migrations between processes opening the record at once (the backend's own lock).</summary>
    protected virtual void LockForMigration(DbTransaction transaction) { }

    /// <summary>The record's error in words, naming <see cref="Path"/>.</summary>
    protected abstract Exception Failure(DbException e);

    /// <summary>Before each statement: a server-backed record reconnects a connection its server dropped.</summary>
    protected virtual void EnsureOpen(DbConnection connection) { }

    /// <summary>Migration v (1-based) takes the schema from version v - 1 to v. Version 1 is the first schema (its tables
    /// may exist already in a record written before versions were kept: CREATE ... IF NOT EXISTS).</summary>
    private string[] Migrations =>
    [
        $"""
        CREATE TABLE IF NOT EXISTS runs (
          id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, step {Integer} NOT NULL DEFAULT 0,
          total_steps {Integer} NOT NULL, directory TEXT NOT NULL, config TEXT NOT NULL, error TEXT,
          created TEXT NOT NULL, updated TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS checkpoints (
          run_id TEXT NOT NULL, step {Integer} NOT NULL, path TEXT NOT NULL, valid {Integer} NOT NULL, created TEXT NOT NULL,
          PRIMARY KEY (run_id, step));
        CREATE TABLE IF NOT EXISTS evaluations (
          run_id TEXT NOT NULL, step {Integer} NOT NULL, dataset TEXT NOT NULL, metric TEXT NOT NULL, value {Real} NOT NULL,
          checkpoint TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (run_id, step, dataset));
        """,
        $"""
        CREATE TABLE warnings (
          run_id TEXT NOT NULL, step {Integer} NOT NULL, message TEXT NOT NULL, created TEXT NOT NULL);
        CREATE INDEX warnings_run ON warnings (run_id);
        """,
    ];

    /// <summary>Creates or migrates the schema to <see cref="SchemaVersion"/>, in one transaction; refuses a newer one.</summary>
    protected void Migrate()
    {
        try
        {
            using var transaction = connection.BeginTransaction();
            LockForMigration(transaction);
            Run(transaction, $"CREATE TABLE IF NOT EXISTS schema_version (version {Integer} NOT NULL)");
            using (var read = Command("SELECT MAX(version) FROM schema_version", transaction))
            {
                var found = read.ExecuteScalar();
                int current = found is null or DBNull ? 0 : Convert.ToInt32(found, System.Globalization.CultureInfo.InvariantCulture);
                if (current > SchemaVersion)
                    throw new RunStoreException(Path, $"its schema is version {current}, newer than this metamae knows (up to {SchemaVersion}): " +
                                                      "a newer metamae wrote it; upgrade this one, or point it at another record");
                for (int v = current + 1; v <= SchemaVersion; v++)
                {
                    Run(transaction, Migrations[v - 1]);
                    Run(transaction, "INSERT INTO schema_version (version) VALUES (@v)", ("@v", v));
                }
            }
            transaction.Commit();
        }
        catch (DbException e)
        {
            throw Failure(e);
        }
    }

    /// <summary>The schema version the record holds (for specs and `metamae runs`).</summary>
    public int StoredSchemaVersion()
    {
        lock (gate)
        {
            using var cmd = Command("SELECT MAX(version) FROM schema_version");
            return Convert.ToInt32(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    private DbCommand Command(string sql, DbTransaction? transaction = null, params (string, object?)[] args)
    {
        var cmd = connection.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = transaction;
        foreach (var (name, value) in args)
        {
            var p = cmd.CreateParameter();
            p.ParameterName = name;
            p.Value = value ?? DBNull.Value;
            cmd.Parameters.Add(p);
        }
        return cmd;
    }

    private void Run(DbTransaction transaction, string sql, params (string, object?)[] args)
    {
        using var cmd = Command(sql, transaction, args);
        cmd.ExecuteNonQuery();
    }

    private static string Now => DateTimeOffset.UtcNow.ToString("O");

    private void Execute(string sql, params (string, object?)[] args)
    {
        lock (gate)
        {
            FailPoints.Hit("record.write");
            EnsureOpen(connection);
            using var cmd = Command(sql, null, args);
            try
            {
                cmd.ExecuteNonQuery();
            }
            catch (DbException e)
            {
                throw Failure(e);
            }
        }
    }

    private List<T> Query<T>(string sql, Func<DbDataReader, T> row, params (string, object?)[] args)
    {
        lock (gate)
        {
            EnsureOpen(connection);
            using var cmd = Command(sql, null, args);
            try
            {
                using var r = cmd.ExecuteReader();
                var rows = new List<T>();
                while (r.Read()) rows.Add(row(r));
                return rows;
            }
            catch (DbException e)
            {
                throw Failure(e);
            }
        }
    }

    public void StartRun(string id, string name, long totalSteps, string directory, string configJson) =>
        Execute("""
            INSERT INTO runs (id, name, status, step, total_steps, directory, config, created, updated)
            VALUES (@id, @name, 'running', 0, @total, @dir, @config, @now, @now)
            ON CONFLICT (id) DO UPDATE SET status = 'running', error = NULL, updated = excluded.updated
            """, ("@id", id), ("@name", name), ("@total", totalSteps), ("@dir", directory), ("@config", configJson), ("@now", Now));

    public void UpdateStep(string id, long step) =>
        Execute("UPDATE runs SET step = @step, updated = @now WHERE id = @id", ("@id", id), ("@step", step), ("@now", Now));

    public void FinishRun(string id, RunStatus status, long step, string? error) =>
        Execute("UPDATE runs SET status = @status, step = @step, error = @error, updated = @now WHERE id = @id",
            ("@id", id), ("@status", status.Text()), ("@step", step), ("@error", error), ("@now", Now));

    public void AddCheckpoint(string id, long step, string path, bool valid) =>
        Execute("""
            INSERT INTO checkpoints (run_id, step, path, valid, created) VALUES (@id, @step, @path, @valid, @now)
            ON CONFLICT (run_id, step) DO UPDATE SET path = excluded.path, valid = excluded.valid, created = excluded.created
            """, ("@id", id), ("@step", step), ("@path", path), ("@valid", valid ? 1L : 0L), ("@now", Now));

    public void RemoveCheckpoint(string id, long step) =>
        Execute("DELETE FROM checkpoints WHERE run_id = @id AND step = @step", ("@id", id), ("@step", step));

    /// <summary>Makes the checkpoints table match the disk: rows of vanished directories go, checkpoints on disk are listed.</summary>
    public void SyncCheckpoints(string id, IEnumerable<(long Step, string Path)> onDisk)
    {
        var disk = onDisk.ToDictionary(c => c.Step, c => c.Path);
        foreach (var (step, _, _) in Checkpoints(id).Where(c => !disk.ContainsKey(c.Step))) RemoveCheckpoint(id, step);
        foreach (var (step, path) in disk) AddCheckpoint(id, step, path, valid: true);
    }

    public void AddEvaluation(EvaluationResult r) =>
        Execute("""
            INSERT INTO evaluations (run_id, step, dataset, metric, value, checkpoint, created) VALUES (@id, @step, @ds, @metric, @value, @ckpt, @now)
            ON CONFLICT (run_id, step, dataset) DO UPDATE SET metric = excluded.metric, value = excluded.value, checkpoint = excluded.checkpoint,
              created = excluded.created
            """, ("@id", r.RunId), ("@step", r.Step), ("@ds", r.Dataset), ("@metric", r.Metric), ("@value", r.Value), ("@ckpt", r.Checkpoint), ("@now", Now));

    public IReadOnlyList<RunRow> Runs() =>
        Query("SELECT id, name, status, step, total_steps, directory, created, updated FROM runs ORDER BY created, id",
            r => new RunRow(r.GetString(0), r.GetString(1), RunStatusText.Parse(r.GetString(2)), r.GetInt64(3), r.GetInt64(4), r.GetString(5),
                r.GetString(6), r.GetString(7)));

    /// <summary>The run's config as recorded when it started (JSON), or null.</summary>
    public string? Config(string id) => Query("SELECT config FROM runs WHERE id = @id", r => r.GetString(0), ("@id", id)).FirstOrDefault();

    /// <summary>Why the run failed, as recorded (null when it did not).</summary>
    public string? Error(string id) =>
        Query("SELECT error FROM runs WHERE id = @id", r => r.IsDBNull(0) ? null : r.GetString(0), ("@id", id)).FirstOrDefault();

    public IReadOnlyList<EvaluationResult> Evaluations(string id) =>
        Query("SELECT step, dataset, metric, value, checkpoint FROM evaluations WHERE run_id = @id ORDER BY step, dataset",
            r => new EvaluationResult(id, r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetDouble(3), 0, 0, 0, r.GetString(4)), ("@id", id));

    public IReadOnlyList<(long Step, string Path, bool Valid)> Checkpoints(string id) =>
        Query("SELECT step, path, valid FROM checkpoints WHERE run_id = @id ORDER BY step",
            r => (r.GetInt64(0), r.GetString(1), r.GetInt64(2) == 1), ("@id", id));

    public void AddWarning(string id, long step, string message) =>
        Execute("INSERT INTO warnings (run_id, step, message, created) VALUES (@id, @step, @message, @now)",
            ("@id", id), ("@step", step), ("@message", message), ("@now", Now));

    public IReadOnlyList<(long Step, string Message)> Warnings(string id) =>
        Query("SELECT step, message FROM warnings WHERE run_id = @id ORDER BY created, step", r => (r.GetInt64(0), r.GetString(1)), ("@id", id));

    public void Dispose() => connection.Dispose();
}

/// <summary>The run record in SQLite (RUNS_ROOT/runs.db): one machine, or several sharing a directory.</summary>
internal sealed class RunStore : SqlRunRecord
{
    public RunStore(string path) : this(new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = System.IO.Path.GetFullPath(path), Pooling = false }.ToString()),
        System.IO.Path.GetFullPath(path))
    {
    }

    private RunStore(SqliteConnection connection, string path) : base(connection, path)
    {
        System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        try
        {
            connection.Open();
            using (var pragma = connection.CreateCommand())
            {
                pragma.CommandText = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;";
                pragma.ExecuteNonQuery();
            }
            Migrate();
        }
        catch (Exception e) when (e is SqliteException or RunStoreException)
        {
            connection.Dispose();
            if (e is SqliteException s) throw Failure(s);
            throw;
        }
    }

    protected override string Integer => "INTEGER";
    protected override string Real => "REAL";

    protected override Exception Failure(DbException e) =>
        new RunStoreException(Path, e.Message.TrimEnd('.') +
                                    (e is SqliteException { SqliteErrorCode: 26 } ? " (the file is not an SQLite database; move it aside to start a new record)" : ""), e);
}

/// <summary>
/// The run record in PostgreSQL: the cluster's, surviving any node. Opened from METAMAE_RECORD
/// (postgresql://user:password@host:port/database or an Npgsql connection string); named without its password.
/// </summary>
internal sealed class PostgresRunStore : SqlRunRecord
{
    public PostgresRunStore(string server) : this(Parse(server))
    {
    }

    private PostgresRunStore((string ConnectionString, string Name) c) : this(new NpgsqlConnection(c.ConnectionString), c.Name)
    {
    }

    private PostgresRunStore(NpgsqlConnection connection, string name) : base(connection, name)
    {
        try
        {
            connection.Open();
            Migrate();
        }
        catch (Exception e) when (e is NpgsqlException or RunStoreException or InvalidOperationException)
        {
            connection.Dispose();
            if (e is RunStoreException) throw;
            throw new RunStoreException(Path, e.Message.TrimEnd('.'), e);
        }
    }

    protected override string Integer => "BIGINT";
    protected override string Real => "DOUBLE PRECISION";

    /// <summary>Two coordinators starting at once: one migrates, the other waits (a transaction-scoped advisory lock).</summary>
    protected override void LockForMigration(DbTransaction transaction)
    {
        using var cmd = transaction.Connection!.CreateCommand();
        cmd.Transaction = transaction;
        cmd.CommandText = "SELECT pg_advisory_xact_lock(731001)";
        cmd.ExecuteNonQuery();
    }

    protected override Exception Failure(DbException e) => new RunStoreException(Path, e.Message.TrimEnd('.'), e, IsTransient(e));

    /// <summary>
    /// The server unreachable, restarting or shutting down (Npgsql's transient errors, SQLSTATE class 08 connection
    /// exceptions and 57P01-57P03): the write may succeed once it is back.
    /// </summary>
    private static bool IsTransient(Exception e) => e switch
    {
        PostgresException p => p.IsTransient || p.SqlState.StartsWith("08", StringComparison.Ordinal) || p.SqlState is "57P01" or "57P02" or "57P03",
        NpgsqlException n => n.IsTransient || n.InnerException is IOException or System.Net.Sockets.SocketException or TimeoutException,
        _ => false,
    };

    /// <summary>A connection a server restart broke is opened again before the next statement.</summary>
    protected override void EnsureOpen(DbConnection connection)
    {
        if (connection.State == System.Data.ConnectionState.Open) return;
        try
        {
            connection.Close();
            connection.Open();
        }
        catch (NpgsqlException e)
        {
            throw new RunStoreException(Path, e.Message.TrimEnd('.'), e, IsTransient(e));
        }
    }

    /// <summary>A URL or a connection string -> the Npgsql connection string and the record's name (no password).</summary>
    public static (string ConnectionString, string Name) Parse(string server)
    {
        var builder = new NpgsqlConnectionStringBuilder();
        try
        {
            if (server.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || server.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
            {
                var uri = new Uri(server);
                builder.Host = uri.Host;
                builder.Port = uri.IsDefaultPort || uri.Port < 0 ? 5432 : uri.Port;
                builder.Database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')) is { Length: > 0 } db ? db : "postgres";
                if (uri.UserInfo.Split(':', 2) is [var user, ..] && user.Length > 0) builder.Username = Uri.UnescapeDataString(user);
                if (uri.UserInfo.Split(':', 2) is [_, var password]) builder.Password = Uri.UnescapeDataString(password);
            }
            else builder.ConnectionString = server;
        }
        catch (Exception e) when (e is UriFormatException or ArgumentException)
        {
            throw new RunStoreException($"{RunRecord.Variable}", $"'{Redact(server)}' is neither a postgresql:// URL nor a connection string: {e.Message}", e);
        }
        builder.Timeout = builder.Timeout == 15 ? 10 : builder.Timeout;
        return (builder.ConnectionString, $"postgresql://{builder.Host}:{builder.Port}/{builder.Database}");
    }

    private static string Redact(string server) => System.Text.RegularExpressions.Regex.Replace(server, @"(?i)(password=)[^;]*|(://[^:/@]*:)[^@]*@", "$1$2***@");
}

/// <summary>
/// The run record cannot be opened or written (not a database, disk full, read-only, server down): named.
/// <see cref="Transient"/>: the server could not be reached or is restarting, and the same write may succeed later.
/// </summary>
public sealed class RunStoreException(string path, string reason, Exception? inner = null, bool transient = false)
    : IOException($"run record {path} is not usable: {reason}", inner)
{
    public bool Transient { get; } = transient;
}

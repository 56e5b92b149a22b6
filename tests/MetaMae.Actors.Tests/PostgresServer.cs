using System.Diagnostics;
using Npgsql;

namespace MetaMae.Actors.Tests;

/// <summary>
/// A real PostgreSQL server for the record specs: Debian's `postgresql` package (installed by .ci/run when missing),
/// initialised in a temporary directory, run as the `postgres` user when the tests run as root (initdb refuses root),
/// on a free loopback port; stopped and deleted when the specs end. <see cref="Unavailable"/> says why not, when the
/// package is not installed, so the specs that need it are reported skipped with that reason.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private readonly string? bin;
    private readonly string root = "";
    private readonly bool asPostgresUser;

    public string? Unavailable { get; }
    public int Port { get; }

    public PostgresServer()
    {
        bin = FindBin();
        if (bin is null)
        {
            Unavailable = "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH); `.ci/run` installs Debian's postgresql";
            return;
        }
        asPostgresUser = Environment.UserName == "root";
        root = Directory.CreateTempSubdirectory("metamae-pg-").FullName;
        if (OperatingSystem.IsLinux()) File.SetUnixFileMode(root, (UnixFileMode)0b111_111_111); // the postgres user writes its data directory here
        Port = Cli.Bench.Loopback.FreePort();
        var data = Path.Combine(root, "data");
        Run("initdb", "-D", data, "-A", "trust", "-U", "metamae", "-E", "UTF8", "--no-sync");
        Start();
    }

    /// <summary>Stops the server as an operator's restart does (fast shutdown: sessions are ended); <see cref="Start"/> brings it back.</summary>
    public void Stop() => Run("pg_ctl", "-D", Path.Combine(root, "data"), "-m", "fast", "-w", "-t", "60", "stop");

    public void Start() => Run("pg_ctl", "-D", Path.Combine(root, "data"), "-l", Path.Combine(root, "server.log"), "-w", "-t", "60",
        "-o", $"-p {Port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", "start");

    /// <summary>A new empty database on the server, as a connection string.</summary>
    public string NewDatabase(string name)
    {
        using (var admin = new NpgsqlConnection(Connection("postgres")))
        {
            admin.Open();
            using var cmd = admin.CreateCommand();
            cmd.CommandText = $"CREATE DATABASE \"{name}\"";
            cmd.ExecuteNonQuery();
        }
        return Connection(name);
    }

    public string Connection(string database) => $"Host=127.0.0.1;Port={Port};Username=metamae;Database={database};Pooling=false";

    private static string? FindBin()
    {
        var versions = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").OrderByDescending(d => int.TryParse(Path.GetFileName(d), out var v) ? v : 0)
            : Enumerable.Empty<string>();
        foreach (var d in versions.Select(v => Path.Combine(v, "bin")))
            if (File.Exists(Path.Combine(d, "initdb"))) return d;
        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').FirstOrDefault(p => File.Exists(Path.Combine(p, "initdb")));
        return onPath;
    }

    private void Run(string tool, params string[] args)
    {
        var psi = asPostgresUser ? new ProcessStartInfo("runuser") : new ProcessStartInfo(Path.Combine(bin!, tool));
        if (asPostgresUser)
            foreach (var a in new[] { "-u", "postgres", "--", Path.Combine(bin!, tool) }) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.RedirectStandardOutput = psi.RedirectStandardError = true;
        psi.WorkingDirectory = root;
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} did not finish in 90 s");
        }
        if (p.ExitCode != 0) throw new InvalidOperationException($"{tool} exited {p.ExitCode}: {output.Result}{error.Result}");
    }

    public void Dispose()
    {
        if (bin is null) return;
        try
        {
            Run("pg_ctl", "-D", Path.Combine(root, "data"), "-m", "immediate", "-w", "-t", "30", "stop");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresServer>
{
    public const string Name = "postgres";
}

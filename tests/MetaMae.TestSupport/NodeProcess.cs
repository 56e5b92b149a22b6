using System.Collections.Concurrent;
using System.Diagnostics;
using MetaMae.Protocol;
using Xunit;

namespace MetaMae.TestSupport;

/// <summary>A `metamae node` child process; its output lines are kept, and it is killed when disposed.</summary>
public sealed class NodeProcess : IDisposable
{
    private readonly ProcessStartInfo start;
    private Process process;
    private int restarts;
    public ConcurrentQueue<string> Lines { get; } = new();
    public string Roles { get; }

    public NodeProcess(string roles, int port, string? seed, string resumeFrom, string? failPoints = null, IReadOnlyDictionary<string, string>? environment = null,
        params string[] extra)
    {
        Roles = roles;
        var args = new List<string> { "node", "--roles", roles, "--port", port.ToString(), "--resume-from", resumeFrom };
        if (seed is not null) args.AddRange(["--seed-nodes", seed]);
        args.AddRange(extra);
        start = MetamaeCommand.StartInfo([.. args]);
        if (failPoints is not null) start.Environment[FailPoints.Variable] = failPoints;
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        process = Launch();
    }

    private Process Launch()
    {
        var p = Process.Start(start)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// <summary>
    /// Waits for the node's "node up" line. A node quarantined while joining exits 1 saying so (it can never join that
    /// cluster again); it is started once more, as compose's or Kubernetes' restart policy would.
    /// </summary>
    public void WaitUp(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!Lines.Any(l => l.StartsWith("node up", StringComparison.Ordinal) || l.Contains("\"node up: ", StringComparison.Ordinal)))
        {
            if (process.HasExited && restarts == 0 && Lines.Any(l => l.Contains("was quarantined by", StringComparison.Ordinal)))
            {
                restarts++;
                process.WaitForExit();
                process.Dispose();
                process = Launch();
                continue;
            }
            if (process.HasExited || clock.Elapsed > timeout)
                throw new TimeoutException($"node {Roles} did not come up: {string.Join("\n", Lines)}");
            Thread.Sleep(50);
        }
    }

    public bool HasExited => process.HasExited;
    public int ExitCode => process.ExitCode;

    public bool WaitForExit(TimeSpan timeout) => process.WaitForExit(timeout);

    /// <summary>Sends a signal by name (STOP, CONT, TERM).</summary>
    public void Signal(string name)
    {
        using var kill = Process.Start("kill", [$"-{name}", process.Id.ToString()])!;
        kill.WaitForExit();
    }

    /// <summary>SIGKILL: no leaving, no handover; the cluster finds out by itself.</summary>
    public void Kill()
    {
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
    }

    public void Dispose()
    {
        if (!process.HasExited) Kill();
        process.Dispose();
    }

    /// <summary>The last <paramref name="count"/> lines of each node, prefixed with its roles: a failed spec's context.</summary>
    public static string Tails(IEnumerable<NodeProcess> nodes, int count = 12) =>
        string.Join("\n", nodes.SelectMany(n => n.Lines.TakeLast(count).Select(l => $"[{n.Roles}] {l}")));
}

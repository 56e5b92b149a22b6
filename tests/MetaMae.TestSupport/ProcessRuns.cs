using System.Collections.Concurrent;
using System.Diagnostics;
using MetaMae.Protocol;
using Xunit;

namespace MetaMae.TestSupport;

/// <summary>Child processes of the metamae command: start, watch their progress, signal them.</summary>
public static class ProcessRuns
{
    /// <summary>Starts metamae with <paramref name="failPoints"/> in its environment (METAMAE_FAILPOINTS), output captured.</summary>
    public static (Process Process, Task<string> Out, Task<string> Err) Start(string? failPoints, params string[] args)
    {
        var psi = MetamaeCommand.StartInfo(args);
        if (failPoints is not null) psi.Environment[FailPoints.Variable] = failPoints;
        var p = Process.Start(psi)!;
        lock (Started) Started.Add((p.Id, p.StartTime));
        return (p, p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync());
    }

    /// <summary>Every process <see cref="Start"/> started, by id and start time (a recycled id is not another's).</summary>
    private static readonly List<(int Id, DateTime StartTime)> Started = [];

    /// <summary>
    /// Kills whatever <see cref="Start"/> started that still runs: a spec that failed mid-run (an assertion thrown while
    /// its client waited) must not leave the client behind. Called when each spec's temporary directory goes.
    /// </summary>
    public static void KillLeftovers()
    {
        List<(int Id, DateTime StartTime)> all;
        lock (Started)
        {
            all = [.. Started];
            Started.Clear();
        }
        foreach (var (id, started) in all)
        {
            try
            {
                using var p = Process.GetProcessById(id);
                if (p.StartTime == started && !p.HasExited) p.Kill(entireProcessTree: true);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // already gone
            }
        }
    }

    public static (int Code, string Out, string Err) Run(string? failPoints, TimeSpan timeout, params string[] args)
    {
        var (p, output, err) = Start(failPoints, args);
        using (p)
        {
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"metamae {string.Join(' ', args)} did not end within {timeout}: {err.Result}");
            }
            p.WaitForExit();
            return (p.ExitCode, output.Result, err.Result);
        }
    }

    /// <summary>
    /// Waits (polling, bounded by <paramref name="timeout"/>) until <paramref name="condition"/> holds while the run's
    /// client <paramref name="client"/> is still running; fails naming <paramref name="what"/>, with the client's error
    /// lines first, all it said, and <paramref name="context"/> (the nodes' last lines) when the run ended or time ran out.
    /// </summary>
    public static async Task Until(Process client, Task<string> output, Task<string> error, Func<bool> condition, string what, TimeSpan timeout,
        Func<string> context)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (client.HasExited)
            {
                var said = await output + await error;
                var cause = string.Join("\n", said.Split('\n').Where(l => l.StartsWith("error:", StringComparison.Ordinal)));
                Assert.Fail($"the run ended (exit {client.ExitCode}) while waiting for {what}: {cause}\n{said}\n{context()}");
            }
            if (clock.Elapsed > timeout) Assert.Fail($"timed out waiting for {what}\n{context()}");
            await Task.Delay(20);
        }
    }

    /// <summary>The newest step in the only run directory under <paramref name="outDir"/>'s metrics, or 0.</summary>
    public static long Reached(string outDir)
    {
        var dirs = Directory.Exists(outDir) ? Directory.GetDirectories(outDir) : [];
        return dirs.Length == 1 ? MetricsFile.Lines(dirs[0], "step").Select(e => e.GetProperty("step").GetInt64()).DefaultIfEmpty(0).Max() : 0;
    }

    /// <summary>Waits until the run has trained <paramref name="step"/> steps (bounded), failing if the process ended first.</summary>
    public static void WaitForStep(Process p, string outDir, long step)
    {
        var clock = Stopwatch.StartNew();
        while (Reached(outDir) < step && clock.Elapsed < TimeSpan.FromMinutes(2) && !p.HasExited) Thread.Sleep(10);
        Assert.False(p.HasExited, $"the run ended before step {step}");
        Assert.True(Reached(outDir) >= step, $"the run did not reach step {step} in time");
    }

    public static void Signal(Process p, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", p.Id.ToString()])!;
        kill.WaitForExit();
    }

    public const int SigKillExit = 128 + 9;
}

using System.Diagnostics;
using System.Globalization;

namespace MetaMae.Protocol;

/// <summary>What a fail point does when it fires.</summary>
public enum FailAction
{
    /// <summary>Throw a <see cref="FailPointException"/> naming the point.</summary>
    Throw,
    /// <summary>Sleep for the given milliseconds (to widen a window another process or test aims at).</summary>
    Sleep,
    /// <summary>SIGKILL the own process: no finally blocks, no shutdown hooks, exactly like `kill -9`.</summary>
    Kill,
}

/// <summary>Thrown where a fail point set to <see cref="FailAction.Throw"/> fires.</summary>
public sealed class FailPointException(string name, long at) : Exception($"fail point '{name}' fired{(at >= 0 ? $" at {at}" : "")}")
{
    public string Name { get; } = name;
}

/// <summary>
/// Named places where reliability specs inject faults into the real code paths (in the style of etcd's gofail):
/// data.open, data.stream-start, data.batch, data.plane-send, learner-host.start, learner.step, learner.resume, checkpoint.write, checkpoint.prune,
/// evaluator.probe, evaluator.crash, artifacts.write, artifacts.report, record.write. Off unless set, so a <see cref="Hit"/> costs one volatile read.
/// A process reads them from METAMAE_FAILPOINTS at start, e.g.
/// <c>METAMAE_FAILPOINTS="checkpoint.write=kill@40;learner.step=throw@7*1;data.batch=sleep(500)"</c>:
/// <c>name=action[@at][*times]</c>, where <c>at</c> matches the step, batch or record the caller passes and
/// <c>times</c> bounds how often it fires.
/// </summary>
public static class FailPoints
{
    public const string Variable = "METAMAE_FAILPOINTS";

    private sealed record Point(FailAction Action, int Millis, long? At, int? Times)
    {
        public int Fired;
    }

    private static readonly Lock Gate = new();
    private static volatile Dictionary<string, Point> points = Parse(Environment.GetEnvironmentVariable(Variable));

    /// <summary>Sets (replaces) one point in this process.</summary>
    public static void Set(string name, FailAction action, long? at = null, int? times = null, int millis = 0)
    {
        lock (Gate) points = new Dictionary<string, Point>(points) { [name] = new Point(action, millis, at, times) };
    }

    /// <summary>Removes every point (specs call it when they end).</summary>
    public static void Clear()
    {
        lock (Gate) points = [];
    }

    /// <summary>How often <paramref name="name"/> has fired since it was set (0 when it is not set).</summary>
    public static int Fired(string name)
    {
        if (!points.TryGetValue(name, out var p)) return 0;
        int hits = Volatile.Read(ref p.Fired);
        return p.Times is { } max ? Math.Min(hits, max) : hits;
    }

    /// <summary>Fires <paramref name="name"/> if it is set and matches <paramref name="at"/>.</summary>
    public static void Hit(string name, long at = -1)
    {
        var current = points;
        if (current.Count == 0 || !current.TryGetValue(name, out var p)) return;
        if (p.At is { } want && want != at) return;
        if (Interlocked.Increment(ref p.Fired) > p.Times) return;
        switch (p.Action)
        {
            case FailAction.Throw:
                throw new FailPointException(name, at);
            case FailAction.Sleep:
                Thread.Sleep(p.Millis);
                break;
            case FailAction.Kill:
                Console.Error.WriteLine($"fail point '{name}' kills the process{(at >= 0 ? $" at {at}" : "")}");
                Console.Error.Flush();
                Process.GetCurrentProcess().Kill();
                Thread.Sleep(Timeout.Infinite);
                break;
        }
    }

    /// <summary>Parses the environment form; a malformed entry is an error at start, not a silently ignored test.</summary>
    private static Dictionary<string, Point> Parse(string? text)
    {
        var result = new Dictionary<string, Point>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(text)) return result;
        foreach (var entry in text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = entry.IndexOf('=');
            if (eq <= 0) throw new FormatException($"{Variable}: '{entry}' is not name=action[@at][*times]");
            var name = entry[..eq];
            var rest = entry[(eq + 1)..];
            int? times = null;
            long? at = null;
            var star = rest.IndexOf('*');
            if (star >= 0)
            {
                times = int.Parse(rest[(star + 1)..], CultureInfo.InvariantCulture);
                rest = rest[..star];
            }
            var atSign = rest.IndexOf('@');
            if (atSign >= 0)
            {
                at = long.Parse(rest[(atSign + 1)..], CultureInfo.InvariantCulture);
                rest = rest[..atSign];
            }
            var (action, millis) = rest switch
            {
                "throw" => (FailAction.Throw, 0),
                "kill" => (FailAction.Kill, 0),
                _ when rest.StartsWith("sleep(", StringComparison.Ordinal) && rest.EndsWith(')') =>
                    (FailAction.Sleep, int.Parse(rest[6..^1], CultureInfo.InvariantCulture)),
                _ => throw new FormatException($"{Variable}: action '{rest}' of '{name}' is not throw, kill or sleep(ms)"),
            };
            result[name] = new Point(action, millis, at, times);
        }
        return result;
    }
}

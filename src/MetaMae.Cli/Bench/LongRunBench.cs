using System.Diagnostics;
using System.Text.Json;

namespace MetaMae.Cli.Bench;

/// <summary>One sample of a long run: its resident memory, step, checkpoints on disk and probes so far.</summary>
public sealed record LongRunSample(double Minutes, long Step, double RssMb, int CheckpointDirectories, double CheckpointMb, int Probes);

/// <summary>What a long run's memory and disk did: the samples and the figures a reader checks.</summary>
public sealed record LongRunResult(IReadOnlyList<LongRunSample> Samples, double RssAfterWarmupMb, double RssEndMb, double PeakRssMb,
    double SecondHalfSlopeMbPerMinute, int MostCheckpointDirectories, double MostCheckpointMb, int Probes, int CheckpointsWritten, IReadOnlyList<string> Warnings);

/// <summary>
/// A run as users run it, with probes, for a fixed time: `metamae run --config CONFIG` as a child process (the
/// allocator set as for `bench model`), checkpointing every N steps with every checkpoint owed a probe, sampled every
/// few seconds from /proc (resident memory) and the run directory (checkpoint directories and their bytes); ended with
/// SIGTERM as a user would. The memory figure that matters is the slope over the second half, when the allocator and
/// the caches have warmed up: a leak shows as a steady climb there.
/// </summary>
public static class LongRunBench
{
    public static LongRunResult Run(string config, TimeSpan duration, long checkpointEvery, TimeSpan interval, string allocator, Action<string> progress)
    {
        var root = Directory.CreateTempSubdirectory("metamae-longrun-").FullName;
        try
        {
            var psi = SelfProcess.Info("run", "--config", config, "--json", "--set", "steps=1000000000", "--set", $"checkpoint_every={checkpointEvery}",
                "--set", $"out={root}", "--set", "evaluation.when=every");
            Allocators.Apply(psi, allocator);
            using var process = Process.Start(psi)!;
            long step = 0;
            int probes = 0, checkpoints = 0;
            var warnings = new List<string>();
            var gate = new Lock();
            process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is not { Length: > 0 } line || line[0] != '{') return;
                using var json = JsonDocument.Parse(line);
                var kind = json.RootElement.TryGetProperty("kind", out var k) ? k.GetString() : null;
                lock (gate)
                {
                    switch (kind)
                    {
                        case "step": step = json.RootElement.GetProperty("Step").GetInt64(); break;
                        case "evaluation": probes++; break;
                        case "checkpoint": checkpoints++; break;
                        case "warning": warnings.Add(json.RootElement.GetProperty("Message").GetString() ?? ""); break;
                    }
                }
            };
            var errors = new List<string>();
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is { } l) lock (gate) errors.Add(l);
            };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();

            var samples = new List<LongRunSample>();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < duration && !process.HasExited)
            {
                Thread.Sleep(interval);
                if (Resident(process.Id) is not { } rss) break;
                var (dirs, bytes) = Checkpoints(root);
                LongRunSample sample;
                lock (gate) sample = new LongRunSample(clock.Elapsed.TotalMinutes, step, rss / 1e6, dirs, bytes / 1e6, probes);
                samples.Add(sample);
                progress($"  {sample.Minutes,5:F1} min  step {sample.Step,7}  RSS {sample.RssMb,6:F0} MB  checkpoints {sample.CheckpointDirectories,3} " +
                         $"({sample.CheckpointMb,6:F1} MB)  probes {sample.Probes}");
            }
            if (process.HasExited)
                throw new InvalidOperationException($"the run exited early with code {process.ExitCode}: {string.Join(Environment.NewLine, errors.TakeLast(20))}");
            Stop(process);
            if (samples.Count < 4) throw new ArgumentException($"only {samples.Count} samples: run longer than 4 intervals");

            var warm = samples[samples.Count / 10];
            var second = samples.Skip(samples.Count / 2).ToList();
            lock (gate)
                return new LongRunResult(samples, warm.RssMb, samples[^1].RssMb, samples.Max(s => s.RssMb), Slope(second),
                    samples.Max(s => s.CheckpointDirectories), samples.Max(s => s.CheckpointMb), probes, checkpoints, warnings.ToList());
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Least-squares MB per minute.</summary>
    private static double Slope(IReadOnlyList<LongRunSample> s)
    {
        double mx = s.Average(x => x.Minutes), my = s.Average(x => x.RssMb);
        double num = s.Sum(x => (x.Minutes - mx) * (x.RssMb - my)), den = s.Sum(x => (x.Minutes - mx) * (x.Minutes - mx));
        return den == 0 ? 0 : num / den;
    }

    private static long? Resident(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line[6..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
        }
        return null;
    }

    private static (int Directories, long Bytes) Checkpoints(string root)
    {
        int dirs = 0;
        long bytes = 0;
        foreach (var run in Directory.GetDirectories(root))
        {
            var dir = Path.Combine(run, "checkpoints");
            if (!Directory.Exists(dir)) continue;
            foreach (var step in Directory.GetDirectories(dir, "step-*"))
            {
                dirs++;
                try
                {
                    bytes += new DirectoryInfo(step).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
                }
                catch (IOException)
                {
                    // pruned while counted
                }
            }
        }
        return (dirs, bytes);
    }

    /// <summary>SIGTERM, as a user stops a run; the final checkpoint is its own business (bounded by stop_grace_seconds).</summary>
    private static void Stop(Process process)
    {
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!) kill.WaitForExit();
        if (!process.WaitForExit(TimeSpan.FromSeconds(90))) process.Kill(entireProcessTree: true);
    }
}

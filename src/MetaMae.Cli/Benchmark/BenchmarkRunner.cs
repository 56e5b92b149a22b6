using System.Diagnostics;
using System.Text.Json;
using MetaMae.Actors;
using MetaMae.Actors.Coordination;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Cli.Benchmark;

/// <summary>One probe result of a finished benchmark run.</summary>
public sealed record BenchmarkProbe(string Dataset, string Metric, long Step, double Value, double? RawInput, string RawFeatures, string Method);

/// <summary>A finished benchmark run: one line of results.jsonl.</summary>
public sealed record BenchmarkRunResult(string Entry, string Variant, string Label, long Seed, string Status, string RunDirectory, double Seconds,
    IReadOnlyList<BenchmarkProbe> Probes, string? Error);

/// <summary>
/// Runs a suite's pretraining runs one after another through the same path as `metamae run`, each in a directory named
/// by what it is (entry, variant, seed) under OUT/runs. Resumable: results.jsonl records every finished run and is
/// skipped on the next start; a run directory without a result (the benchmark was killed in it) is resumed from its
/// latest checkpoint, exactly as `metamae resume` does. The report files are rewritten after every run.
/// </summary>
public static class BenchmarkRunner
{
    public static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static string ResultsPath(string outDirectory) => Path.Combine(outDirectory, "results.jsonl");

    public static List<BenchmarkRunResult> ReadResults(string outDirectory)
    {
        var path = ResultsPath(outDirectory);
        if (!File.Exists(path)) return [];
        var results = new List<BenchmarkRunResult>();
        foreach (var (line, number) in File.ReadLines(path).Select((l, i) => (l, i + 1)))
        {
            if (line.Trim().Length == 0) continue;
            try
            {
                results.Add(JsonSerializer.Deserialize<BenchmarkRunResult>(line, Json)!);
            }
            catch (JsonException)
            {
                // A line cut by a kill while it was written: that run is done again.
                Console.Error.WriteLine($"warning: {path}:{number} is not a complete result; its run is redone");
            }
        }
        return results;
    }

    public static int Run(BenchmarkSuite suite, string outDirectory, Action<string> say)
    {
        Directory.CreateDirectory(outDirectory);
        var done = BenchmarkReport.Completed(ReadResults(outDirectory)).Select(r => (r.Entry, r.Variant, r.Seed)).ToHashSet();
        var clock = Stopwatch.StartNew();
        int index = 0, failed = 0;
        foreach (var run in suite.Runs)
        {
            index++;
            if (done.Contains((run.Entry, run.Variant, run.Seed)))
            {
                say($"[{index}/{suite.Runs.Count}] {run.RunId}: done before, kept");
                continue;
            }
            var runDir = Path.GetFullPath(Path.Combine(run.Config.Out, run.RunId));
            var config = run.Config;
            var resumed = File.Exists(Path.Combine(runDir, "config.json"));
            if (resumed) config = RunSpecs.Load(Path.Combine(runDir, "config.json"), []); // as it started
            say($"[{index}/{suite.Runs.Count}] {run.RunId}: {run.Label} on {config.Dataset.Name}, seed {run.Seed}, {config.Steps} steps" +
                (resumed ? " (resuming the run a kill interrupted)" : ""));
            var started = Stopwatch.StartNew();
            RunFinished finished;
            using (var owned = RunDirectoryLock.Acquire(runDir))
                finished = RunHost.Execute(config, run.RunId, runDir, OutputMode.Quiet, new RunStartOptions { Lock = owned });
            var result = new BenchmarkRunResult(run.Entry, run.Variant, run.Label, run.Seed, finished.Status.Text(), runDir, started.Elapsed.TotalSeconds,
                finished.Results.Select(e => new BenchmarkProbe(e.Dataset, e.Metric, e.Step, e.Value, e.RawInput, e.RawFeatures, e.Method)).ToList(),
                finished.Error);
            File.AppendAllText(ResultsPath(outDirectory), JsonSerializer.Serialize(result, Json) + "\n");
            if (finished.Status != RunStatus.Completed)
            {
                failed++;
                say($"    {finished.Status.Text()}: {finished.Error}");
            }
            else
            {
                var last = result.Probes.GroupBy(p => p.Dataset).Select(g => g.MaxBy(p => p.Step)!);
                say($"    {started.Elapsed.TotalSeconds:F0} s; " + string.Join(", ", last.Select(p => $"{p.Dataset} {p.Metric} {p.Value:F4}")));
            }
            BenchmarkReport.Write(suite, outDirectory);
        }
        var report = BenchmarkReport.Write(suite, outDirectory);
        say($"{suite.Runs.Count} runs ({failed} failed) in {clock.Elapsed:hh\\:mm\\:ss} this time; results in {outDirectory}: results.md, results.csv, summary.json, results.png");
        Console.WriteLine();
        Console.WriteLine(report);
        return failed == 0 ? ExitCodes.Completed : ExitCodes.Failed;
    }
}

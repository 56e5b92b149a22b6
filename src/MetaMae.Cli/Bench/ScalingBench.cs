using System.Collections.Concurrent;
using System.Diagnostics;
using MetaMae.Actors.Reporting;

namespace MetaMae.Cli.Bench;

/// <summary>
/// One row: a learner group of <see cref="Replicas"/> processes with gradient buckets of <see cref="BucketMb"/> (0: no
/// overlap), its rate, the part of its step spent waiting for communication and all the time communication took.
/// </summary>
public sealed record ScalingRow(int Replicas, double BucketMb, int GlobalBatch, double SamplesPerSecond, double StepMs, double CommunicationMs,
    double TotalCommunicationMs, double DataWaitMs, int Steps);

/// <summary>
/// Samples/s of a learner group of 1, 2, 3 ... `metamae node --roles learner` processes (batch_scaling scale: each
/// replica a full batch), one coordinator+data process beside them, on loopback; from the run's metrics.jsonl, after
/// the first steps: step time, the part of it spent waiting in collectives (gradients and synchronised BatchNorm), all
/// the time the collectives took (with overlap, partly behind the backward pass), data wait. Each group size runs once
/// per bucket size (gradient_bucket_mb; 0: one all-reduce after the backward pass).
/// </summary>
public static class ScalingBench
{
    public static List<ScalingRow> Run(IReadOnlyList<int> replicas, IReadOnlyList<double> bucketsMb, string preset, int batch, int steps, Action<string> progress)
    {
        var root = Directory.CreateTempSubdirectory("metamae-scaling-").FullName;
        var rows = new List<ScalingRow>();
        try
        {
            foreach (var n in replicas)
            foreach (var bucket in n == 1 ? bucketsMb.Take(1) : bucketsMb)
            {
                var row = Measure(n, bucket, preset, batch, steps, Path.Combine(root, $"runs-{n}-{bucket}"));
                progress($"  {n} learner process(es), buckets {(bucket > 0 ? $"{bucket} MB" : "off")}: {row.SamplesPerSecond,7:F1} samples/s, step {row.StepMs:F0} ms, " +
                         $"waiting for communication {row.CommunicationMs:F0} ms ({100 * row.CommunicationMs / row.StepMs:F1}%) of {row.TotalCommunicationMs:F0} ms it took, data wait {row.DataWaitMs:F0} ms");
                rows.Add(row);
            }
            return rows;
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private sealed class Node : IDisposable
    {
        private readonly Process process;
        public ConcurrentQueue<string> Lines { get; } = new();

        public Node(params string[] args)
        {
            process = SelfProcess.Start(args);
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public void WaitUp()
        {
            var clock = Stopwatch.StartNew();
            while (!Lines.Any(l => l.StartsWith("node up", StringComparison.Ordinal)))
            {
                if (process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(60))
                    throw new TimeoutException("a bench node did not come up: " + string.Join("\n", Lines));
                Thread.Sleep(50);
            }
        }

        public bool WaitForExit(TimeSpan timeout) => process.WaitForExit(timeout);
        public int ExitCode => process.ExitCode;

        public void Dispose()
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            process.Dispose();
        }
    }

    private static ScalingRow Measure(int n, double bucketMb, string preset, int batch, int steps, string runs)
    {
        int port = Loopback.FreePort();
        var seed = $"127.0.0.1:{port}";
        var nodes = new List<Node>();
        try
        {
            var coordinator = new Node("node", "--roles", "coordinator,data", "--port", port.ToString(), "--resume-from", runs);
            nodes.Add(coordinator);
            coordinator.WaitUp();
            for (int i = 0; i < n; i++) nodes.Add(new Node("node", "--roles", "learner", "--port", "0", "--seed-nodes", seed, "--resume-from", runs));
            foreach (var node in nodes) node.WaitUp();
            var client = new Node("run", "--cluster", seed, "--out", runs, "--quiet", "--set", "dataset.name=fashion-mnist", "--set", "dataset.root=embedded",
                "--set", $"preset={preset}", "--set", $"steps={steps}", "--set", $"batch_size={batch}", "--set", $"checkpoint_every={steps}",
                "--set", $"replicas={n}", "--set", $"gradient_bucket_mb={bucketMb.ToString(System.Globalization.CultureInfo.InvariantCulture)}", "--set", "batch_scaling=scale", "--set", "threads=1", "--set", "device=cpu", "--set", "name=scaling");
            nodes.Add(client);
            if (!client.WaitForExit(TimeSpan.FromMinutes(30))) throw new TimeoutException($"the {n}-replica bench run did not end in 30 minutes");
            client.WaitForExit(TimeSpan.FromSeconds(5));
            if (client.ExitCode != 0) throw new InvalidOperationException($"the {n}-replica bench run exited {client.ExitCode}: " + string.Join("\n", client.Lines));
            var runDir = Directory.GetDirectories(runs).Single(d => File.Exists(Path.Combine(d, "metrics.jsonl")));
            var timed = RunArtifacts.ReadSteps(Path.Combine(runDir, "metrics.jsonl")).Where(s => s.Key > Math.Min(3, steps / 4)).Select(s => s.Value).ToList();
            double step = timed.Average(e => e.GetProperty("step_seconds").GetDouble());
            double comm = timed.Average(e => e.TryGetProperty("comm_seconds", out var c) ? c.GetDouble() : 0);
            double total = timed.Average(e => e.TryGetProperty("comm_total_seconds", out var c) ? c.GetDouble() : 0);
            double wait = timed.Average(e => e.GetProperty("wait_seconds").GetDouble());
            int global = timed[0].GetProperty("batch").GetInt32();
            return new ScalingRow(n, bucketMb, global, global / (step + wait), 1e3 * step, 1e3 * comm, 1e3 * total, 1e3 * wait, timed.Count);
        }
        finally
        {
            foreach (var node in nodes) node.Dispose();
        }
    }
}

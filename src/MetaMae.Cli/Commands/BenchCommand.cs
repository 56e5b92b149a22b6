using System.CommandLine;
using System.Text.Json;
using MetaMae.Cli.Bench;
using MetaMae.Model;
using MetaMae.Model.Training;
using Spectre.Console;

namespace MetaMae.Cli.Commands;

/// <summary><c>metamae bench model</c>: the step benchmark (issue: speed of MAE vs MetaMAE per DABS shape).</summary>
public static class BenchCommand
{
    public static Command Create(params Command[] more)
    {
        var bench = new Command("bench", "Benchmarks that print figures: the training step, data tokenizing.");
        bench.Add(ModelCommand());
        bench.Add(DataCommand());
        bench.Add(ClusterCommand());
        bench.Add(AllReduceCommand());
        bench.Add(AllReduceWorkerCommand());
        bench.Add(ScalingCommand());
        bench.Add(LongRunCommand());
        foreach (var c in more) bench.Add(c);
        return bench;
    }

    private static Command ModelCommand()
    {
        var shapes = new Option<string>("--shapes") { Description = "Comma-separated: image, sensor, protein, image-text.", DefaultValueFactory = _ => "image,sensor,protein" };
        var objectives = new Option<string>("--objectives") { Description = "Comma-separated: mae, metamae, metamae-fo.", DefaultValueFactory = _ => "mae,metamae,metamae-fo" };
        var preset = new Option<string>("--preset") { Description = "Model size preset.", DefaultValueFactory = _ => "dabs" };
        var precisions = new Option<string>("--precisions") { Description = "Comma-separated: fp32, bf16.", DefaultValueFactory = _ => "fp32" };
        var batch = new Option<int?>("--batch") { Description = "Batch size (default: the DABS batch of each shape)." };
        var steps = new Option<int>("--steps") { Description = "Timed steps per row.", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps first.", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads.", DefaultValueFactory = _ => 1 };
        var allocator = new Option<string>("--allocator") { Description = "auto (jemalloc where installed, else glibc-tuned), glibc-tuned, glibc or jemalloc, set in each child process.", DefaultValueFactory = _ => "auto" };
        allocator.AcceptOnlyFromAmong(Allocators.Choices);
        var json = new Option<string?>("--json") { Description = "Also write the rows to this JSON file." };
        var rssAfter = new Option<string?>("--rss-after") { Description = "Step counts after which to record resident memory, e.g. 100,2000 (memory must stay flat)." };
        var child = new Option<bool>("--child") { Hidden = true };
        var reference = new Option<string?>("--reference")
        {
            Description = "A copy of the authors' repository (alinlab/MetaMAE): run their step after ours on every fp32 row (needs python3-torch and " +
                          "../shared/reference/bench.py) and print the ratios.",
        };
        var referenceScript = new Option<string?>("--reference-script") { Description = "bench.py of ../shared/reference (found beside the repository by default)." };

        var cmd = new Command("model", "Median time of one full step (forward, backward, AdamW) per shape and objective.")
        {
            shapes, objectives, preset, precisions, batch, steps, warmup, threads, allocator, json, rssAfter, child, reference, referenceScript,
        };
        cmd.SetAction(parse =>
        {
            var shapeList = Split(parse.GetValue(shapes)!);
            var objectiveList = Split(parse.GetValue(objectives)!);
            var precisionList = Split(parse.GetValue(precisions)!);
            var rssSteps = parse.GetValue(rssAfter) is { } r
                ? Split(r).Select(v => int.TryParse(v, out var k) && k >= 1 ? k : throw new ArgumentException($"--rss-after: '{v}' is not a step count")).ToList()
                : null;
            foreach (var s in shapeList) ModelBench.Shape(s);
            foreach (var o in objectiveList)
                foreach (var pr in precisionList) ModelBench.Options(o, 0.5, pr);
            var p = parse.GetValue(preset)!;
            Presets.Get(p);
            if (parse.GetValue(child))
            {
                var row = ModelBench.Measure(shapeList[0], objectiveList[0], p, parse.GetValue(batch), parse.GetValue(steps),
                    parse.GetValue(warmup), parse.GetValue(threads), parse.GetValue(allocator)!, precisionList[0], rssSteps);
                Console.WriteLine(JsonSerializer.Serialize(row));
                return 0;
            }

            var authors = parse.GetValue(reference);
            string? script = null;
            if (authors is not null)
            {
                if (!File.Exists(Path.Combine(authors, "models.py")))
                    throw new ArgumentException($"--reference: {authors} has no models.py; give a copy of the authors' repository (alinlab/MetaMAE)");
                script = parse.GetValue(referenceScript) ?? ReferenceBench.FindScript()
                    ?? throw new ArgumentException("--reference needs ../shared/reference/bench.py beside the repository, or --reference-script");
                if (p != "dabs" || parse.GetValue(batch) is not null)
                    throw new ArgumentException("--reference compares the dabs preset at the DABS batch sizes (the authors' script builds only those)");
            }
            var rows = new List<BenchRow>();
            var compared = new List<ReferenceRow>();
            AnsiConsole.MarkupLine($"[bold]Step benchmark[/]: preset {p}, {parse.GetValue(threads)} thread(s), allocator {Allocators.Resolve(parse.GetValue(allocator)!)}, " +
                                   $"{parse.GetValue(warmup)} warm-up + {parse.GetValue(steps)} timed steps, one process per row");
            foreach (var s in shapeList)
                foreach (var o in objectiveList)
                    foreach (var pr in precisionList)
                    {
                        var row = ModelBench.MeasureInChild(s, o, p, parse.GetValue(batch), parse.GetValue(steps), parse.GetValue(warmup),
                            parse.GetValue(threads), parse.GetValue(allocator)!, pr, rssSteps);
                        rows.Add(row);
                        AnsiConsole.MarkupLine($"  {s,-8} {o,-11} {pr,-5} median {row.MedianMs,9:F0} ms  (min {row.MinMs:F0}, max {row.MaxMs:F0})  " +
                                               $"{row.Gflops,6:F1} GFLOP/s of {row.PeakGflops:F0} peak  peak RSS {row.PeakRssMb:F0} MB");
                        if (script is null || pr != "fp32" || !ReferenceBench.Configs.ContainsKey(s)) continue;
                        var (ms, rss) = ReferenceBench.Measure(script, authors!, s, o, parse.GetValue(threads), parse.GetValue(warmup), parse.GetValue(steps),
                            parse.GetValue(allocator)!);
                        compared.Add(new ReferenceRow(row, ms, rss));
                        AnsiConsole.MarkupLine($"  {s,-8} {o,-11} authors' median {ms,9:F0} ms  peak RSS {rss:F0} MB  ours / theirs {row.MedianMs / ms:F2}");
                    }
            AnsiConsole.MarkupLine("  GFLOP/s: an analytic count of the step's matrix products (backward = 2 x forward; MetaMAE's decoder passes " +
                                   "9x forward second order, 5x first order; StepFlops.cs) over the median step; peak: a 1536^3 matmul in the same precision and threads.");
            Print(rows);
            if (compared.Count > 0) PrintReference(compared);
            if (parse.GetValue(json) is { } path)
                File.WriteAllText(path, compared.Count > 0
                    ? JsonSerializer.Serialize(new { rows, reference = compared }, new JsonSerializerOptions { WriteIndented = true })
                    : JsonSerializer.Serialize(rows, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }

    private static Command DataCommand()
    {
        var kinds = new Option<string>("--kinds") { Description = "Comma-separated: " + string.Join(", ", DataBench.Kinds) + ".", DefaultValueFactory = _ => string.Join(",", DataBench.Kinds) };
        var preset = new Option<string>("--preset") { Description = "Model preset for the learner's rate.", DefaultValueFactory = _ => "dabs" };
        var records = new Option<int>("--records") { Description = "Records written per kind.", DefaultValueFactory = _ => 400 };
        var steps = new Option<int>("--learner-steps") { Description = "Timed learner steps per kind (MetaMAE, second order).", DefaultValueFactory = _ => 2 };
        var threads = new Option<int>("--threads") { Description = "libtorch threads for the learner.", DefaultValueFactory = _ => 1 };
        var cmd = new Command("data", "Tokenizing throughput per data kind (per core and pipeline) next to the learner's consumption rate.")
        {
            kinds, preset, records, steps, threads,
        };
        cmd.SetAction(parse =>
        {
            var p = parse.GetValue(preset)!;
            Presets.Get(p);
            AnsiConsole.MarkupLine($"[bold]Data benchmark[/]: {Environment.ProcessorCount} cores; learner = MetaMAE step, preset {p}, {parse.GetValue(threads)} thread(s)");
            var rows = DataBench.Run(Split(parse.GetValue(kinds)!), p, parse.GetValue(records), parse.GetValue(steps), parse.GetValue(threads),
                line => AnsiConsole.WriteLine(line));
            var table = new Table().AddColumns("kind", "data set", "tokenize /s per core", $"pipeline /s ({Environment.ProcessorCount} cores)", "learner /s", "per-core : learner");
            foreach (var r in rows)
                table.AddRow(r.Kind, r.Dataset, $"{r.PerCoreSamplesPerSec:F0}", $"{r.PipelineSamplesPerSec:F0}", $"{r.LearnerSamplesPerSec:F1}", $"{r.Ratio:F1}x");
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    private static Command ClusterCommand()
    {
        var kinds = new Option<string>("--kinds") { Description = "Comma-separated: " + string.Join(", ", ClusterBench.Kinds) + ".", DefaultValueFactory = _ => string.Join(",", ClusterBench.Kinds) };
        var nodes = new Option<string>("--data-nodes") { Description = "Comma-separated data node counts (0: the learner's own node).", DefaultValueFactory = _ => "0,1,2,3" };
        var steps = new Option<int>("--steps") { Description = "Learner steps per row.", DefaultValueFactory = _ => 30 };
        var preset = new Option<string>("--preset") { Description = "Model preset of the learner.", DefaultValueFactory = _ => "tiny" };
        var records = new Option<int>("--records") { Description = "Records written per kind (speech writes one clip per 8).", DefaultValueFactory = _ => 1024 };
        var batches = new Option<string>("--batches")
        {
            Description = "Comma-separated ways batches reach a learner on another node: plane (the data node's batch plane), streamref (Akka.Remote).",
            DefaultValueFactory = _ => string.Join(",", ClusterBench.BatchPaths),
        };
        var cmd = new Command("cluster", "Learner rate and data-wait fed by 0-3 data nodes on loopback; batch transfer rates (serializer, StreamRef, batch plane) next to plain TCP.")
        {
            kinds, nodes, steps, preset, records, batches,
        };
        cmd.SetAction(parse =>
        {
            var p = parse.GetValue(preset)!;
            Presets.Get(p);
            var counts = Split(parse.GetValue(nodes)!).Select(int.Parse).ToList();
            AnsiConsole.MarkupLine($"[bold]Cluster benchmark[/]: {Environment.ProcessorCount} cores, every node an ActorSystem in this process on 127.0.0.1; learner preset {p}, 1 thread");
            var paths = Split(parse.GetValue(batches)!).ToList();
            if (paths.FirstOrDefault(b => !ClusterBench.BatchPaths.Contains(b)) is { } badPath)
                throw new ArgumentException($"--batches: unknown way '{badPath}'; use {string.Join(", ", ClusterBench.BatchPaths)}");
            var (rows, transfers) = ClusterBench.Run(Split(parse.GetValue(kinds)!), counts, paths, parse.GetValue(steps), p, parse.GetValue(records),
                line => AnsiConsole.WriteLine(line)).GetAwaiter().GetResult();
            var table = new Table().AddColumns("kind", "data nodes", "batches", "learner samples/s", "data wait %", "timed steps");
            foreach (var r in rows)
                table.AddRow(r.Kind, r.DataNodes.ToString(), r.Batches, $"{r.SamplesPerSecond:F1}", $"{r.DataWaitPercent:F1}", r.Steps.ToString());
            AnsiConsole.Write(table);
            var transfer = new Table().AddColumns("kind", "batch MB", "batches", "serializer MB/s", "StreamRef MB/s", "batch plane MB/s", "plain TCP MB/s",
                "StreamRef : TCP", "batch plane : TCP");
            foreach (var t in transfers)
                transfer.AddRow(t.Kind, $"{t.BatchBytes / 1e6:F2}", t.Batches.ToString(), $"{t.SerializerMBps:F0}", $"{t.StreamRefMBps:F0}", $"{t.PlaneMBps:F0}",
                    $"{t.TcpMBps:F0}", $"{t.StreamRefMBps / t.TcpMBps:F2}", $"{t.PlaneMBps / t.TcpMBps:F2}");
            AnsiConsole.Write(transfer);
            return 0;
        });
        return cmd;
    }

    private static Command AllReduceCommand()
    {
        var replicas = new Option<string>("--replicas") { Description = "Comma-separated learner process counts.", DefaultValueFactory = _ => "2,3,4" };
        var floats = new Option<int?>("--floats") { Description = "Gradient elements (default: the dabs preset's MetaMAE, about 7.3 M)." };
        var iterations = new Option<int>("--iterations") { Description = "Timed all-reduces per row (after 2 warm-ups).", DefaultValueFactory = _ => 10 };
        var chunk = new Option<int?>("--chunk-floats") { Description = "Elements per chunk (default: each transport's, as learners use it: tcp 1 Mi, akka 256 Ki)." };
        var transports = new Option<string>("--transports") { Description = "Comma-separated: tcp (the data plane), akka (messages over Akka.Remote).", DefaultValueFactory = _ => "tcp,akka" };
        var cmd = new Command("allreduce", "Time per gradient all-reduce across 2-4 learner processes on loopback (fp32 and bf16), next to raw TCP.")
        {
            replicas, floats, iterations, chunk, transports,
        };
        cmd.SetAction(parse =>
        {
            int n = parse.GetValue(floats) ?? AllReduceBench.DabsGradients();
            var chosen = Split(parse.GetValue(transports)!).ToList();
            if (chosen.FirstOrDefault(t => !AllReduceBench.Transports.Contains(t)) is { } bad)
                throw new ArgumentException($"--transports: unknown transport '{bad}'; use {string.Join(", ", AllReduceBench.Transports)}");
            AnsiConsole.MarkupLine($"[bold]All-reduce benchmark[/]: {Environment.ProcessorCount} cores, {n:N0} floats ({n * 4 / 1e6:F1} MB fp32), " +
                                   $"ring on 127.0.0.1 over {string.Join(" and ", chosen)}, chunks of " +
                                   string.Join(" and ", chosen.Select(t => $"{parse.GetValue(chunk) ?? AllReduceBench.ChunkOf(t):N0} ({t})")));
            var rows = AllReduceBench.Run(Split(parse.GetValue(replicas)!).Select(int.Parse).ToList(), chosen, n, parse.GetValue(iterations), parse.GetValue(chunk),
                line => AnsiConsole.WriteLine(line));
            var table = new Table().AddColumns("processes", "transport", "wire", "median ms", "min ms", "max ms", "buffer GB/s", "bus MB/s", "raw TCP MB/s", "bus : TCP");
            foreach (var r in rows)
                table.AddRow(r.Replicas.ToString(), r.Transport, r.Precision, $"{r.MedianMs:F1}", $"{r.MinMs:F1}", $"{r.MaxMs:F1}", $"{r.Floats * 4 / 1e9 / (r.MedianMs / 1e3):F2}",
                    $"{r.LinkMBps:F0}", $"{r.TcpMBps:F0}", $"{r.LinkMBps / r.TcpMBps:F2}");
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    /// <summary>One replica of `bench allreduce`, started by it (hidden).</summary>
    private static Command AllReduceWorkerCommand()
    {
        var rank = new Option<int>("--rank");
        var ports = new Option<string>("--ports");
        var floats = new Option<int>("--floats");
        var iterations = new Option<int>("--iterations");
        var chunk = new Option<int>("--chunk-floats");
        var transport = new Option<string>("--transport") { DefaultValueFactory = _ => "akka" };
        var cmd = new Command("allreduce-worker", "One replica of `bench allreduce`.") { rank, ports, floats, iterations, chunk, transport };
        cmd.Hidden = true;
        cmd.SetAction(parse => AllReduceBench.Worker(parse.GetValue(rank), Split(parse.GetValue(ports)!).Select(int.Parse).ToList(), parse.GetValue(floats),
            parse.GetValue(iterations), parse.GetValue(chunk), parse.GetValue(transport)!));
        return cmd;
    }

    private static Command ScalingCommand()
    {
        var replicas = new Option<string>("--replicas") { Description = "Comma-separated learner process counts.", DefaultValueFactory = _ => "1,2,3" };
        var preset = new Option<string>("--preset") { Description = "Model preset.", DefaultValueFactory = _ => "small" };
        var batch = new Option<int>("--batch") { Description = "Batch per replica (batch_scaling scale).", DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { Description = "Steps per row.", DefaultValueFactory = _ => 20 };
        var buckets = new Option<string>("--bucket-mb")
        {
            Description = "Comma-separated gradient_bucket_mb values to run each group with (0: one all-reduce after the backward pass).",
            DefaultValueFactory = _ => "0,1,4",
        };
        var cmd = new Command("scaling", "Samples/s of a learner group of 1-3 processes and the communication share of its step, with and without overlap.")
        {
            replicas, preset, batch, steps, buckets,
        };
        cmd.SetAction(parse =>
        {
            var p = parse.GetValue(preset)!;
            Presets.Get(p);
            AnsiConsole.MarkupLine($"[bold]Scaling benchmark[/]: {Environment.ProcessorCount} cores, fashion-mnist, preset {p}, batch {parse.GetValue(batch)} per replica, " +
                                   "1 thread per learner process, one coordinator+data process");
            var bucketList = Split(parse.GetValue(buckets)!).Select(b => double.Parse(b, System.Globalization.CultureInfo.InvariantCulture)).ToList();
            if (bucketList.Count == 0 || bucketList.Any(b => !(b >= 0))) throw new ArgumentException("--bucket-mb: give one or more sizes >= 0, e.g. 0,4");
            var rows = ScalingBench.Run(Split(parse.GetValue(replicas)!).Select(int.Parse).ToList(), bucketList, p, parse.GetValue(batch), parse.GetValue(steps),
                line => AnsiConsole.WriteLine(line));
            var table = new Table().AddColumns("learner processes", "buckets MB", "global batch", "samples/s", "x 1 process", "step ms", "waiting for communication ms",
                "communication %", "communication took ms", "data wait ms");
            var one = rows.FirstOrDefault(r => r.Replicas == 1);
            foreach (var r in rows)
                table.AddRow(r.Replicas.ToString(), r.Replicas == 1 ? "-" : r.BucketMb > 0 ? $"{r.BucketMb:G}" : "off", r.GlobalBatch.ToString(), $"{r.SamplesPerSecond:F1}",
                    one is null ? "" : $"{r.SamplesPerSecond / one.SamplesPerSecond:F2}", $"{r.StepMs:F0}", $"{r.CommunicationMs:F0}", $"{100 * r.CommunicationMs / r.StepMs:F1}",
                    $"{r.TotalCommunicationMs:F0}", $"{r.DataWaitMs:F0}");
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    private static Command LongRunCommand()
    {
        var config = new Option<string>("--config") { Description = "The run's config.", DefaultValueFactory = _ => "config/runs/fashion-mnist.json" };
        var minutes = new Option<double>("--minutes") { Description = "How long the run goes before SIGTERM.", DefaultValueFactory = _ => 20 };
        var every = new Option<long>("--checkpoint-every") { Description = "Steps between checkpoints, each probed.", DefaultValueFactory = _ => 50 };
        var interval = new Option<double>("--sample-seconds") { Description = "Seconds between samples.", DefaultValueFactory = _ => 15 };
        var allocator = new Option<string>("--allocator") { Description = "auto, glibc-tuned, glibc or jemalloc (as `bench model`).", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("long-run", "Resident memory and checkpoint disk of a run with probes over minutes (the figures a leak or a probe backlog shows in).")
        {
            config, minutes, every, interval, allocator,
        };
        cmd.SetAction(parse =>
        {
            var path = Path.GetFullPath(parse.GetValue(config)!);
            if (!File.Exists(path)) throw new ArgumentException($"--config: {path} not found");
            var a = parse.GetValue(allocator)!;
            AnsiConsole.MarkupLineInterpolated($"[bold]Long-run benchmark[/]: {path}, {parse.GetValue(minutes):0.#} min, a probed checkpoint every {parse.GetValue(every)} steps, allocator {Allocators.Resolve(a)}");
            var r = LongRunBench.Run(path, TimeSpan.FromMinutes(parse.GetValue(minutes)), parse.GetValue(every), TimeSpan.FromSeconds(parse.GetValue(interval)), a,
                line => AnsiConsole.WriteLine(line));
            var table = new Table().AddColumns("RSS after warm-up MB", "RSS at the end MB", "peak RSS MB", "second-half slope MB/min", "most checkpoint dirs",
                "most checkpoint MB", "checkpoints written", "probes run");
            table.AddRow($"{r.RssAfterWarmupMb:F0}", $"{r.RssEndMb:F0}", $"{r.PeakRssMb:F0}", $"{r.SecondHalfSlopeMbPerMinute:+0.00;-0.00}",
                r.MostCheckpointDirectories.ToString(), $"{r.MostCheckpointMb:F1}", r.CheckpointsWritten.ToString(), r.Probes.ToString());
            AnsiConsole.Write(table);
            foreach (var w in r.Warnings) AnsiConsole.MarkupLineInterpolated($"[yellow]warning[/]: {w}");
            return 0;
        });
        return cmd;
    }

    private static void Print(List<BenchRow> rows)
    {
        var table = new Table().AddColumns("shape", "objective", "precision", "batch", "threads", "median ms/step", "min", "max", "x MAE",
            "fp32 / this", "GFLOP/step", "GFLOP/s", "% of peak", "peak RSS MB");
        foreach (var r in rows)
        {
            var mae = rows.FirstOrDefault(m => m.Shape == r.Shape && m.Objective == "mae" && m.Precision == r.Precision);
            var ratio = mae is null ? "" : $"{r.MedianMs / mae.MedianMs:F2}";
            var fp32 = rows.FirstOrDefault(m => m.Shape == r.Shape && m.Objective == r.Objective && m.Precision == "fp32");
            var speedup = fp32 is null || r.Precision == "fp32" ? "" : $"{fp32.MedianMs / r.MedianMs:F2}";
            table.AddRow(r.Shape, r.Objective, r.Precision, r.Batch.ToString(), r.Threads.ToString(), $"{r.MedianMs:F0}", $"{r.MinMs:F0}",
                $"{r.MaxMs:F0}", ratio, speedup, $"{r.StepGflop:F1}", $"{r.Gflops:F1}", r.PeakGflops > 0 ? $"{100 * r.Gflops / r.PeakGflops:F0}" : "",
                $"{r.PeakRssMb:F0}");
        }
        AnsiConsole.Write(table);
        // Where each step's time goes, pass by pass (mean over the timed steps).
        var passes = new Table().AddColumns(["shape", "objective", "precision", .. PassTimer.Passes.Select(p => p + " ms")]);
        foreach (var r in rows.Where(r => r.PassMs is not null))
            passes.AddRow([r.Shape, r.Objective, r.Precision, .. PassTimer.Passes.Select(p => r.PassMs!.TryGetValue(p, out var ms) ? $"{ms:F0}" : "-")]);
        AnsiConsole.Write(passes);
        var withRss = rows.Where(r => r.RssMbAfter is { Count: > 0 }).ToList();
        if (withRss.Count == 0) return;
        var marks = withRss.SelectMany(r => r.RssMbAfter!.Keys).Distinct().Order().ToList();
        var memory = new Table().AddColumns(["shape", "objective", "precision", .. marks.Select(m => $"RSS MB after {m} steps"), "last / first"]);
        foreach (var r in withRss)
        {
            var values = marks.Select(m => r.RssMbAfter!.TryGetValue(m, out var mb) ? mb : double.NaN).ToList();
            memory.AddRow([r.Shape, r.Objective, r.Precision, .. values.Select(v => $"{v:F0}"), $"{values[^1] / values[0]:F3}"]);
        }
        AnsiConsole.Write(memory);
    }

    /// <summary>Ours beside the authors' code, row by row from this one run: time and memory ratios, and MetaMAE's cost over MAE in each.</summary>
    private static void PrintReference(List<ReferenceRow> rows)
    {
        var table = new Table().AddColumns("shape", "objective", "threads", "ours ms", "authors' ms", "ours / authors'", "x MAE ours", "x MAE authors'",
            "ours GFLOP/s (% of peak)", "ours peak RSS MB", "authors' peak RSS MB", "memory ours / authors'");
        foreach (var r in rows)
        {
            var mae = rows.FirstOrDefault(m => m.Ours.Shape == r.Ours.Shape && m.Ours.Objective == "mae");
            table.AddRow(r.Ours.Shape, r.Ours.Objective, r.Ours.Threads.ToString(), $"{r.Ours.MedianMs:F0}", $"{r.OriginalMs:F0}", $"{r.Ratio:F2}",
                mae is null ? "" : $"{r.Ours.MedianMs / mae.Ours.MedianMs:F2}", mae is null ? "" : $"{r.OriginalMs / mae.OriginalMs:F2}",
                r.Ours.PeakGflops > 0 ? $"{r.Ours.Gflops:F1} ({100 * r.Ours.Gflops / r.Ours.PeakGflops:F0}%)" : $"{r.Ours.Gflops:F1}",
                $"{r.Ours.PeakRssMb:F0}", $"{r.OriginalPeakRssMb:F0}", $"{r.MemoryRatio:F2}");
        }
        AnsiConsole.MarkupLine("[bold]Against the authors' code[/] (alinlab/MetaMAE on PyTorch, same threads, steps and allocator, rows alternating in this run):");
        AnsiConsole.Write(table);
    }

    private static string[] Split(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

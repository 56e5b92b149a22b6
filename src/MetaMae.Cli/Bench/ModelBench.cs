using System.Diagnostics;
using System.Text.Json;
using MetaMae.Model;
using MetaMae.Model.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Cli.Bench;

/// <summary>One DABS-shaped workload of the step benchmark.</summary>
public sealed record BenchShape(string Name, InputSpec Input, double MaskRatio, int Batch);

/// <summary>A measured row: median and spread of full steps (forward, backward, AdamW), threads, peak memory.</summary>
public sealed record BenchRow(
    string Shape, string Objective, string Preset, int Batch, int Threads, int Steps,
    double MedianMs, double MinMs, double MaxMs, double PeakRssMb, string Allocator,
    string Precision = "fp32", double StepGflop = 0, double PeakGflops = 0, IReadOnlyDictionary<string, double>? PassMs = null,
    IReadOnlyDictionary<int, double>? RssMbAfter = null)
{
    /// <summary>Achieved GFLOP/s of the median step (analytic count, see <see cref="StepFlops"/>).</summary>
    public double Gflops => MedianMs > 0 ? StepGflop / (MedianMs / 1000) : 0;
}

/// <summary>
/// Times one full training step with a named preset. Each (shape, objective) runs in a child process so that its
/// peak memory is its own and allocator settings (LD_PRELOAD) apply from process start.
/// </summary>
public static class ModelBench
{
    public static readonly BenchShape[] Shapes =
    [
        // Mask ratios from the data sets these shapes stand for (DatasetSpec.DefaultMaskRatio, the one definition).
        new("image", InputSpec.Image(3, 32, 32, 4, 4), Data.DatasetCatalog.Get("cifar10").Spec.DefaultMaskRatio, 64),
        new("sensor", InputSpec.Series(52, 320, 5), Data.DatasetCatalog.Get("pamap2").Spec.DefaultMaskRatio, 256),
        new("protein", InputSpec.TokenIds(26, 128), Data.DatasetCatalog.Get("pfam").Spec.DefaultMaskRatio, 128),
        // Captioned images (mscoco): 224x224 in 16x16 patches, then 32 WordPiece ids; text masked at its own 0.5.
        new("image-text", Actors.Runs.RunSpecs.InputOf(Data.DatasetCatalog.Get("mscoco").Spec), Data.DatasetCatalog.Get("mscoco").Spec.DefaultMaskRatio, 64),
    ];

    public static readonly string[] Objectives = ["mae", "metamae", "metamae-fo"];

    public static BenchShape Shape(string name) =>
        Shapes.FirstOrDefault(s => s.Name == name)
        ?? throw new ArgumentException($"unknown bench shape '{name}'; known: {string.Join(", ", Shapes.Select(s => s.Name))}");

    public static ObjectiveOptions Options(string objective, double maskRatio, string precision = "fp32")
    {
        var p = precision switch
        {
            "fp32" => Precision.Fp32,
            "bf16" => Precision.Bf16,
            _ => throw new ArgumentException($"unknown precision '{precision}'; known: fp32, bf16"),
        };
        return objective switch
        {
            "mae" => new ObjectiveOptions { Objective = Objective.Mae, MaskRatio = maskRatio, Precision = p },
            "metamae" => new ObjectiveOptions { Objective = Objective.MetaMae, MaskRatio = maskRatio, Precision = p },
            "metamae-fo" => new ObjectiveOptions { Objective = Objective.MetaMae, MaskRatio = maskRatio, FirstOrder = true, Precision = p },
            _ => throw new ArgumentException($"unknown objective '{objective}'; known: {string.Join(", ", Objectives)}"),
        };
    }

    /// <summary>Runs in this process: warm-up steps, then timed steps on one fixed batch.</summary>
    /// <param name="rssAfter">
    /// Step counts after which to record resident memory (say 100 and 2,000): the run goes on, untimed, to the largest,
    /// so a leak or a growing allocator shows as a difference (memory must stay flat over a long run).
    /// </param>
    public static BenchRow Measure(string shapeName, string objective, string preset, int? batch, int steps, int warmup,
        int threads, string allocator, string precision = "fp32", IReadOnlyList<int>? rssAfter = null)
    {
        var shape = Shape(shapeName);
        TorchRuntime.SetThreads(threads);
        random.manual_seed(0);
        var size = Presets.Get(preset);
        var config = new ModelConfig(shape.Input, size, Options(objective, shape.MaskRatio, precision));
        int n = batch ?? shape.Batch;
        using var model = new MaskedAutoencoder(config);
        using var optimizer = Optimizers.AdamW(model);
        var g = new Generator(1);
        using var x = shape.Input.Kind switch
        {
            TokenizerKind.Tokens => randint(0, shape.Input.Vocab, [n, .. shape.Input.SampleShape], generator: g),
            TokenizerKind.ImageText => ImageTextBatch(shape.Input, n, g),
            _ => randn([n, .. shape.Input.SampleShape], generator: g),
        };
        var times = new List<double>();
        var timer = new PassTimer();
        var rss = new Dictionary<int, double>();
        int total = Math.Max(warmup + steps, rssAfter is { Count: > 0 } ? rssAfter.Max() : 0);
        for (int i = 0; i < total; i++)
        {
            using var draws = MaskingDraws.Sample(n, shape.Input.NumTokens, g);
            var clock = Stopwatch.StartNew();
            bool timed = i >= warmup && i < warmup + steps;
            TrainStep.Run(model, optimizer, x, draws, i, 1e-4, timer: timed ? timer : null);
            if (timed) times.Add(clock.Elapsed.TotalMilliseconds);
            if (rssAfter?.Contains(i + 1) == true) rss[i + 1] = ProcessMemory.ResidentBytes() / 1048576.0;
        }
        times.Sort();
        double median = times.Count % 2 == 1 ? times[times.Count / 2] : (times[times.Count / 2 - 1] + times[times.Count / 2]) / 2;
        var peak = ProcessMemory.PeakResidentBytes() / 1048576.0; // before the peak-rate matmuls below allocate their own
        return new BenchRow(shapeName, objective, preset, n, TorchRuntime.Threads, steps, median, times[0], times[^1], peak, allocator,
            precision, StepFlops.Step(config, n) / 1e9, StepFlops.PeakGflops(precision == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32),
            timer.MeanMs(), rss.Count > 0 ? rss : null);
    }

    /// <summary>Random pixels and ids packed as the pipeline packs image+text samples (<see cref="InputSpec.Batch"/>).</summary>
    private static Tensor ImageTextBatch(InputSpec input, int n, Generator g)
    {
        using var scope = NewDisposeScope();
        var pixels = randn([n, input.ImagePart.SampleLength], generator: g).data<float>().ToArray();
        var ids = randint(0, input.Vocab, [n, input.TextLength], generator: g).data<long>().ToArray();
        return input.Batch(pixels, ids, 0, n).MoveToOuterDisposeScope();
    }

    /// <summary>Starts this program again for one row and reads the JSON line it prints.</summary>
    public static BenchRow MeasureInChild(string shape, string objective, string preset, int? batch, int steps, int warmup,
        int threads, string allocator, string precision = "fp32", IReadOnlyList<int>? rssAfter = null)
    {
        allocator = Allocators.Resolve(allocator);
        var exe = System.Environment.ProcessPath ?? throw new InvalidOperationException("cannot locate this program to start a child");
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // `dotnet metamae.dll` hosts: pass the entry assembly along.
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet") psi.ArgumentList.Add(typeof(ModelBench).Assembly.Location);
        foreach (var a in new[] { "bench", "model", "--child", "--shapes", shape, "--objectives", objective, "--preset", preset,
                     "--steps", steps.ToString(), "--warmup", warmup.ToString(), "--threads", threads.ToString(), "--allocator", allocator,
                     "--precisions", precision })
            psi.ArgumentList.Add(a);
        if (batch is { } b) { psi.ArgumentList.Add("--batch"); psi.ArgumentList.Add(b.ToString()); }
        if (rssAfter is { Count: > 0 }) { psi.ArgumentList.Add("--rss-after"); psi.ArgumentList.Add(string.Join(",", rssAfter)); }
        Allocators.Apply(psi, allocator);
        using var child = Process.Start(psi)!;
        var stderr = child.StandardError.ReadToEndAsync();
        var stdout = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        var line = stdout.Split('\n').LastOrDefault(l => l.TrimStart().StartsWith('{'));
        if (child.ExitCode != 0 || line is null)
            throw new InvalidOperationException($"bench child for {shape}/{objective} failed (exit {child.ExitCode}): {stderr.Result}{stdout}");
        return JsonSerializer.Deserialize<BenchRow>(line)!;
    }
}

/// <summary>
/// glibc's malloc adapts its mmap threshold and returns freed memory eagerly, so each step's activations come back as
/// fresh pages whose faults can cost several times the arithmetic. <c>glibc-tuned</c> fixes the threshold at its
/// 32 MB maximum and stops trimming (the settings the Makefile exports where jemalloc is missing); <c>jemalloc</c>
/// preloads jemalloc with page purging off (the same no-return-to-the-kernel policy, with far less fragmentation:
/// about 30% less peak memory on the dabs steps); <c>auto</c> is jemalloc where libjemalloc2 is installed, else
/// glibc-tuned; <c>glibc</c> leaves the process as it is.
/// </summary>
public static class Allocators
{
    public static readonly string[] Choices = ["auto", "glibc-tuned", "glibc", "jemalloc"];

    public static readonly IReadOnlyDictionary<string, string> GlibcTuned = new Dictionary<string, string>
    {
        ["MALLOC_MMAP_THRESHOLD_"] = "33554432",
        ["MALLOC_TRIM_THRESHOLD_"] = "17179869184",
        ["MALLOC_TOP_PAD_"] = "268435456",
    };

    /// <summary>
    /// Never purge freed pages (decay -1): step after step the activations reuse the same resident pages, as with
    /// glibc-tuned. With purging on (jemalloc's default 10 s decay) the protein step was several times slower here.
    /// </summary>
    public const string JemallocConf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";

    private static readonly string[] JemallocPaths =
        ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2"];

    public static string? JemallocPath => JemallocPaths.FirstOrDefault(File.Exists);

    /// <summary>What <c>auto</c> means on this machine.</summary>
    public static string Resolve(string allocator) => allocator == "auto" ? (JemallocPath is null ? "glibc-tuned" : "jemalloc") : allocator;

    /// <summary>The environment a process needs for <paramref name="allocator"/> (null value: remove the variable).</summary>
    public static IReadOnlyDictionary<string, string?> Environment(string allocator)
    {
        switch (Resolve(allocator))
        {
            case "glibc":
                return GlibcTuned.Keys.Append("LD_PRELOAD").Append("MALLOC_CONF").ToDictionary(k => k, _ => (string?)null);
            case "glibc-tuned":
                var tuned = GlibcTuned.ToDictionary(kv => kv.Key, kv => (string?)kv.Value);
                tuned["LD_PRELOAD"] = null;
                tuned["MALLOC_CONF"] = null;
                return tuned;
            case "jemalloc":
                var path = JemallocPath ?? throw new ArgumentException(
                    "allocator 'jemalloc' needs libjemalloc.so.2 (Debian/Ubuntu: apt-get install libjemalloc2; `make setup` does it)");
                return new Dictionary<string, string?> { ["LD_PRELOAD"] = path, ["MALLOC_CONF"] = JemallocConf };
            default:
                throw new ArgumentException($"unknown allocator '{allocator}'; allowed: {string.Join(", ", Choices)}");
        }
    }

    public static void Apply(ProcessStartInfo psi, string allocator)
    {
        foreach (var (key, value) in Environment(allocator))
            if (value is null) psi.Environment.Remove(key);
            else psi.Environment[key] = value;
    }
}

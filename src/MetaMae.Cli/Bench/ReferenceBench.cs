using System.Diagnostics;
using System.Text.Json;

namespace MetaMae.Cli.Bench;

/// <summary>The authors' step on the same row, and ours beside it.</summary>
public sealed record ReferenceRow(BenchRow Ours, double OriginalMs, double OriginalPeakRssMb)
{
    public double Ratio => Ours.MedianMs / OriginalMs;
    public double MemoryRatio => Ours.PeakRssMb / OriginalPeakRssMb;
}

/// <summary>
/// Runs the authors' training step (alinlab/MetaMAE, unmodified, through ../shared/reference/bench.py's worker) for a
/// bench row, right after ours, in the same conditions: threads, warm-up and timed steps, allocator environment. One
/// process per row each, peak memory from <c>/usr/bin/time</c>. Rows alternate, so ratios come from one run.
/// Needs python3 with torch and OpenBLAS (see ../shared/reference/README.md) and a copy of the authors' repository.
/// </summary>
public static class ReferenceBench
{
    /// <summary>bench.py's configs for our shapes (the image+text domain has no counterpart: the original never implemented it).</summary>
    public static readonly IReadOnlyDictionary<string, string> Configs = new Dictionary<string, string>
    {
        ["image"] = "a", ["sensor"] = "b", ["protein"] = "c",
    };

    /// <summary>The system's python3 (Debian's python3-torch lives there), not one a version manager puts first on PATH.</summary>
    public static string Python => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    /// <summary>The bench.py script beside this repository (../shared/reference), if there is one.</summary>
    public static string? FindScript()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "..", "shared", "reference", "bench.py");
            if (File.Exists(candidate)) return Path.GetFullPath(candidate);
        }
        return null;
    }

    public static (double MedianMs, double PeakRssMb) Measure(string script, string authorsRepo, string shape, string objective,
        int threads, int warmup, int steps, string allocator)
    {
        if (!Configs.TryGetValue(shape, out var cfg))
            throw new ArgumentException($"shape '{shape}' has no counterpart in the authors' code (known: {string.Join(", ", Configs.Keys)})");
        var model = objective.Replace('-', '_');
        var timeFile = Path.GetTempFileName();
        try
        {
            var psi = new ProcessStartInfo("/usr/bin/time")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
                WorkingDirectory = Path.GetDirectoryName(script)!,
            };
            foreach (var a in new[] { "-f", "%M", "-o", timeFile, Python, script, "--worker", "train", "--cfg", cfg, "--model", model,
                         "--threads", threads.ToString() })
                psi.ArgumentList.Add(a);
            Allocators.Apply(psi, allocator);
            psi.Environment["METAMAE_REF"] = authorsRepo;
            psi.Environment["BENCH_WARM"] = warmup.ToString();
            psi.Environment["BENCH_TIMED"] = steps.ToString();
            // As side_by_side.sh: the pthread OpenBLAS pinned to one thread, the OpenMP one for more.
            if (threads > 1) psi.Environment["LD_LIBRARY_PATH"] = "/usr/lib/x86_64-linux-gnu/openblas-openmp";
            else psi.Environment["OPENBLAS_NUM_THREADS"] = "1";
            using var child = Process.Start(psi)!;
            var stderr = child.StandardError.ReadToEndAsync();
            var stdout = child.StandardOutput.ReadToEnd();
            child.WaitForExit();
            var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith("RESULT_JSON ", StringComparison.Ordinal));
            if (child.ExitCode != 0 || line is null)
                throw new InvalidOperationException($"the authors' step for {shape}/{objective} failed (exit {child.ExitCode}): {stderr.Result}{stdout}");
            using var result = JsonDocument.Parse(line["RESULT_JSON ".Length..]);
            var kb = double.Parse(File.ReadAllText(timeFile).Trim().Split('\n')[^1], System.Globalization.CultureInfo.InvariantCulture);
            return (result.RootElement.GetProperty("median_ms").GetDouble(), kb / 1024);
        }
        finally
        {
            File.Delete(timeFile);
        }
    }
}

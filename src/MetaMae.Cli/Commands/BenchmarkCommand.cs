using System.CommandLine;
using System.Globalization;
using MetaMae.Cli.Benchmark;

namespace MetaMae.Cli.Commands;

/// <summary>benchmark --suite FILE [--out DIR] [--data-root DIR] [--dry-run]: the accuracy benchmark across modalities.</summary>
public static class BenchmarkCommand
{
    public static Command Create()
    {
        var suite = new Option<string>("--suite") { Description = "A suite file (config/benchmarks/real-cpu.json, dabs.json).", Required = true };
        var outDir = new Option<string?>("--out") { Description = "Where results and runs go (default: benchmarks/SUITE); a killed benchmark continues there." };
        var dataRoot = new Option<string?>("--data-root") { Description = "Replaces {data_root} in the suite (default: the suite's data_root)." };
        var dryRun = new Option<bool>("--dry-run") { Description = "Validate every run's configuration and list the plan; train nothing." };
        var cmd = new Command("benchmark",
            "Pretrain MetaMAE and MAE (and ablations) from the same initial weights on each entry of a suite, at each seed; probe the raw input, " +
            "the random encoder and each pretrained one; write mean ± std tables, CSV, JSON and a chart. Resumable.")
            { suite, outDir, dataRoot, dryRun };
        cmd.SetAction(p =>
        {
            var path = p.GetValue(suite)!;
            var name = Path.GetFileNameWithoutExtension(path);
            var outDirectory = Path.GetFullPath(p.GetValue(outDir) ?? Path.Combine("benchmarks", name));
            var plan = BenchmarkSuite.Load(path, p.GetValue(dataRoot), Path.Combine(outDirectory, "runs"));
            if (p.GetValue(dryRun))
            {
                Console.WriteLine($"suite {plan.Name}: {plan.Entries.Count} entries x {plan.Variants.Count} variants ({string.Join(", ", plan.Variants.Select(v => v.Label))}) " +
                                  $"x {plan.Seeds.Count} seeds = {plan.Runs.Count} runs, every configuration valid");
                Output.Table(["run", "pretrain", "probe", "preset", "steps", "batch", "objective"], plan.Runs.Select(r => (IReadOnlyList<string>)
                [
                    r.RunId, r.Config.Dataset.Name, string.Join(", ", r.Config.Evaluation.Datasets.Select(d => d.Name)), r.Config.Preset,
                    r.Config.Steps.ToString(CultureInfo.InvariantCulture), (r.Config.BatchSize?.ToString(CultureInfo.InvariantCulture) ?? "DABS"),
                    Protocol.RunSpec.ConfigName(r.Config.Model) + (r.Config.FirstOrder ? " (first order)" : ""),
                ]));
                Console.WriteLine($"total: {plan.Runs.Sum(r => r.Config.Steps):N0} steps");
                return ExitCodes.Completed;
            }
            Console.WriteLine($"benchmark {plan.Name}: {plan.Runs.Count} runs -> {outDirectory}");
            return BenchmarkRunner.Run(plan, outDirectory, Console.WriteLine);
        });
        return cmd;
    }
}

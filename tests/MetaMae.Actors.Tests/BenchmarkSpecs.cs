using System.Diagnostics;
using System.Text.Json;
using MetaMae.Cli.Benchmark;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>`metamae benchmark`: suites expand as written, verdicts say what the numbers say, a killed benchmark continues.</summary>
public sealed class BenchmarkSpecs : TempDirTest
{
    private string Suite(string body)
    {
        var path = Path.Combine(Root, "suite.json");
        File.WriteAllText(path, body);
        return path;
    }

    private string Table()
    {
        var path = Path.Combine(Root, "data", "points.csv");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var rng = new Random(1);
        var lines = new List<string> { "cls,a,b,c,d" };
        for (int i = 0; i < 300; i++)
        {
            int c = i % 3;
            lines.Add(string.Join(",", [c == 0 ? "x" : c == 1 ? "y" : "z", .. Enumerable.Range(0, 4).Select(k => (k == c ? 2.0 : 0.0) + rng.NextDouble()).Select(v => v.ToString("F3"))]));
        }
        File.WriteAllLines(path, lines);
        return path;
    }

    private const string Body = """
        {
          // comments are allowed
          "name": "mini", "data_root": "DATA", "seeds": [3, 4],
          "base": { "preset": "tiny", "steps": 4, "checkpoint_every": 4, "batch_size": 16, "device": "cpu", "data_parallelism": 1,
                    "evaluation": { "epochs": 1 } },
          "entries": [
            { "name": "images", "modality": "images",
              "config": { "dataset": { "name": "fashion-mnist", "root": "embedded" },
                          "evaluation": { "datasets": [ { "name": "fashion-mnist", "root": "embedded", "max_train": 200, "max_test": 100 } ] } } },
            { "name": "points", "modality": "table",
              "config": { "steps": 6, "checkpoint_every": 6,
                          "dataset": { "name": "points", "format": "table", "path": "{data_root}/points.csv", "label_column": "cls" },
                          "evaluation": { "datasets": [ { "name": "points", "format": "table", "path": "{data_root}/points.csv", "label_column": "cls" } ] } },
              "ablations": [ { "name": "lambda-0", "config": { "contrastive_weight": 0 } } ] }
          ],
          "ablations": [ { "name": "first-order", "config": { "first_order": true } } ]
        }
        """;

    [Fact]
    public void A_suite_expands_to_every_entry_variant_and_seed_with_merged_and_validated_configs()
    {
        Table();
        var suite = BenchmarkSuite.Load(Suite(Body.Replace("DATA", Path.Combine(Root, "data"))), null, Path.Combine(Root, "out"));
        // images: MetaMAE, MAE, first-order; points: the same and its own lambda-0; two seeds each.
        Assert.Equal(2 * 3 + 2 * 4, suite.Runs.Count);
        Assert.Equal(["MetaMAE", "MAE", "MetaMAE first-order", "MetaMAE lambda-0"], suite.Variants.Select(v => v.Label));
        var lambda0 = suite.Runs.Single(r => r.RunId == "points-metamae-lambda-0-s4");
        Assert.Equal((0.0, PretrainingModel.MetaMae, 4L, 6L), (lambda0.Config.ContrastiveWeight, lambda0.Config.Model, lambda0.Config.Seed, lambda0.Config.Steps));
        Assert.Equal(Path.Combine(Root, "data", "points.csv"), lambda0.Config.Dataset.Path);
        Assert.True(suite.Runs.Single(r => r.RunId == "images-metamae-first-order-s3").Config.FirstOrder);
        Assert.DoesNotContain(suite.Runs, r => r.Entry == "images" && r.Variant == "metamae-lambda-0");
        // The random encoder is probed once per seed (from the MetaMAE run); MAE starts from the same weights.
        Assert.True(suite.Runs.Single(r => r.RunId == "images-metamae-s3").Config.Evaluation.IncludeRandomInit);
        Assert.False(suite.Runs.Single(r => r.RunId == "images-mae-s3").Config.Evaluation.IncludeRandomInit);
        Assert.Equal(ProbeWhen.Last, suite.Runs[0].Config.Evaluation.When);

        var bad = Assert.Throws<ConfigException>(() => BenchmarkSuite.Load(Suite(Body.Replace("\"steps\": 6", "\"steps\": 0")), Path.Combine(Root, "data"), Root));
        Assert.Contains("entries[1] (points, MetaMAE, seed 3): steps", bad.Message);
        Assert.Contains("must be at least 1", bad.Message);
        var objective = Assert.Throws<ConfigException>(() => BenchmarkSuite.Load(Suite(Body.Replace("\"seeds\"", "\"objectives\": [\"byol\"], \"seeds\"")), Path.Combine(Root, "data"), Root));
        Assert.Contains("'byol' is not allowed", objective.Message);
    }

    [Fact]
    public void The_shipped_suites_are_valid_and_the_dabs_one_lists_every_domain_without_its_data()
    {
        // data_root is relative to where `make benchmark` runs (the repository): ../shared/data.
        var realCpu = BenchmarkSuite.Load(Path.Combine(TestRuns.RepoRoot, "config", "benchmarks", "real-cpu.json"),
            Path.Combine(TestRuns.RepoRoot, "..", "shared", "data"), Root);
        Assert.Equal(3, realCpu.Seeds.Count);
        Assert.Contains(realCpu.Entries, e => e.Name == "text");
        var dabs = BenchmarkSuite.Load(Path.Combine(TestRuns.RepoRoot, "config", "benchmarks", "dabs.json"), "/nonexistent/dabs", Root);
        Assert.Equal(["natural-images", "speech", "sensors", "particle-physics", "genomics", "proteins", "multispectral", "wafer-maps"], dabs.Entries.Select(e => e.Name));
        Assert.All(dabs.Runs, r => Assert.Equal(("dabs", 100_000L), (r.Config.Preset, r.Config.Steps)));
        Assert.Contains(dabs.Variants, v => v.Label == "MetaMAE first-order");
    }

    [Fact]
    public void The_verdict_says_where_metamae_does_not_beat_mae_and_where_nothing_beats_the_raw_input()
    {
        Summary S(double mean, double std = 0.01) => new(mean, std, 3);
        Assert.Equal("MetaMAE beats MAE (+0.0500)", BenchmarkReport.Verdict(new Dictionary<string, Summary> { ["MetaMAE"] = S(0.8), ["MAE"] = S(0.75) }));
        Assert.Equal("MetaMAE and MAE within noise (+0.0050)", BenchmarkReport.Verdict(new Dictionary<string, Summary> { ["MetaMAE"] = S(0.805), ["MAE"] = S(0.8) }));
        Assert.Equal("MAE beats MetaMAE (-0.1000); no pretrained encoder beats the raw input; pretraining does not beat the random encoder",
            BenchmarkReport.Verdict(new Dictionary<string, Summary>
            {
                ["raw input"] = S(0.9), ["random init"] = S(0.85), ["MetaMAE"] = S(0.7), ["MAE"] = S(0.8),
            }));
    }

    [Fact]
    public void A_killed_benchmark_continues_where_it_stopped_and_writes_every_table()
    {
        Table();
        var suite = Suite(Body.Replace("DATA", Path.Combine(Root, "data")).Replace("\"seeds\": [3, 4]", "\"seeds\": [3]"));
        var outDir = Path.Combine(Root, "bench");
        var results = Path.Combine(outDir, "results.jsonl");
        // Kill -9 once the first run is recorded and the second has started.
        using (var p = Process.Start(MetamaeCommand.StartInfo("benchmark", "--suite", suite, "--out", outDir))!)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                while (!(File.Exists(results) && File.ReadAllLines(results).Length >= 1 && Directory.GetDirectories(Path.Combine(outDir, "runs")).Length >= 2))
                {
                    Assert.False(p.HasExited, "the benchmark ended before it could be killed: " + p.StandardError.ReadToEnd());
                    Assert.True(clock.Elapsed < TimeSpan.FromMinutes(3), "no run finished within 3 minutes");
                    Thread.Sleep(100);
                }
            }
            finally
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit();
            }
        }
        var before = File.ReadAllLines(results).Length;
        var (code, output, err) = MetamaeCommand.Run(TimeSpan.FromMinutes(6), "benchmark", "--suite", suite, "--out", outDir);
        Assert.True(code == 0, output + err);
        Assert.Equal(before, output.Split('\n').Count(l => l.Contains("done before, kept")));
        var recorded = File.ReadAllLines(results).Select(l => JsonSerializer.Deserialize<BenchmarkRunResult>(l, BenchmarkRunner.Json)!).ToList();
        Assert.Equal(7, recorded.Select(r => (r.Entry, r.Variant, r.Seed)).Distinct().Count()); // images x3 + points x4, each once
        Assert.All(recorded, r => Assert.Equal("completed", r.Status));
        var md = File.ReadAllText(Path.Combine(outDir, "results.md"));
        Assert.Contains("| points (table) | points → points | accuracy |", md);
        Assert.Contains("MetaMAE lambda-0", md);
        Assert.Matches(@"\| points \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|", md); // the losses table: every variant's recon, MetaMAE's contrastive
        Assert.True(new FileInfo(Path.Combine(outDir, "results.png")).Length > 1000);
        var csv = File.ReadAllLines(Path.Combine(outDir, "results.csv"));
        Assert.Contains(csv, l => l.StartsWith("points,points,points,accuracy,raw input,3,"));
        Assert.Contains(csv, l => l.StartsWith("images,fashion-mnist,fashion-mnist,accuracy,random init,3,"));
        Assert.Contains(csv, l => l.StartsWith("images,fashion-mnist,fashion-mnist,accuracy,MAE,3,"));
    }
}

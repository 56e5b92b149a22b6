using System.Globalization;
using System.Text;
using System.Text.Json;
using MetaMae.Protocol;

namespace MetaMae.Cli.Benchmark;

/// <summary>Mean and sample standard deviation over seeds (std 0 for one seed), and how many seeds.</summary>
public sealed record Summary(double Mean, double Std, int Seeds)
{
    public static Summary? Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return null;
        double mean = values.Average();
        double std = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
        return new Summary(mean, std, values.Count);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Mean:F4} ± {Std:F4}");
}

/// <summary>One row of the results table: a probe set of an entry, each encoder's score over seeds.</summary>
public sealed record BenchmarkRow(string Entry, string Modality, string PretrainedOn, string Probe, string Metric,
    IReadOnlyDictionary<string, Summary> Scores, string Verdict);

/// <summary>
/// The benchmark's outputs, rewritten from results.jsonl after every run: results.csv (one line per run, probe set and
/// encoder), summary.json and results.md (mean ± std over seeds, and a verdict per row saying plainly where MetaMAE
/// does not beat MAE and where no encoder beats the raw input), results.png (a bar chart).
/// </summary>
public static class BenchmarkReport
{
    public const string RawInput = "raw input", RandomInit = "random init";

    /// <summary>The latest line of each run (a failed run that was done again has two).</summary>
    public static List<BenchmarkRunResult> Latest(IEnumerable<BenchmarkRunResult> results) =>
        results.GroupBy(r => (r.Entry, r.Variant, r.Seed)).Select(g => g.Last()).ToList();

    /// <summary>The runs whose latest line says they completed: the ones every table is made of.</summary>
    public static List<BenchmarkRunResult> Completed(IEnumerable<BenchmarkRunResult> results) =>
        Latest(results).Where(r => r.Status == RunStatus.Completed.Text()).ToList();

    /// <param name="latest">Completed runs (<see cref="Completed"/>).</param>
    public static IReadOnlyList<BenchmarkRow> Rows(BenchmarkSuite suite, IReadOnlyList<BenchmarkRunResult> latest)
    {
        var rows = new List<BenchmarkRow>();
        foreach (var (entry, modality) in suite.Entries)
        {
            var runs = latest.Where(r => r.Entry == entry).ToList();
            var plan = suite.Runs.First(r => r.Entry == entry).Config;
            foreach (var probe in plan.Evaluation.Datasets.Select(d => d.Name))
            {
                var scores = new Dictionary<string, Summary>();
                List<BenchmarkProbe> Probes(BenchmarkRunResult r) => r.Probes.Where(p => p.Dataset == probe).ToList();
                void Add(string column, IEnumerable<double> values)
                {
                    if (Summary.Of(values.ToList()) is { } s) scores[column] = s;
                }
                Add(RawInput, runs.Select(r => Probes(r).FirstOrDefault(p => p.RawInput is not null)?.RawInput).Where(v => v is not null).Select(v => v!.Value).Take(suite.Seeds.Count));
                Add(RandomInit, runs.Where(r => r.Variant == "metamae").Select(r => Probes(r).FirstOrDefault(p => p.Step == 0)?.Value).Where(v => v is not null).Select(v => v!.Value));
                foreach (var (variant, label) in suite.Variants)
                    Add(label, runs.Where(r => r.Variant == variant).Select(r => Probes(r).Where(p => p.Step > 0).MaxBy(p => p.Step)?.Value)
                        .Where(v => v is not null).Select(v => v!.Value));
                rows.Add(new BenchmarkRow(entry, modality, plan.Dataset.Name, probe, runs.SelectMany(Probes).FirstOrDefault()?.Metric ?? "",
                    scores, Verdict(scores)));
            }
        }
        return rows;
    }

    /// <summary>What the row shows, in words: MetaMAE against MAE (beyond one standard deviation or not), encoders against the raw input.</summary>
    public static string Verdict(IReadOnlyDictionary<string, Summary> scores)
    {
        var parts = new List<string>();
        if (scores.TryGetValue("MetaMAE", out var meta) && scores.TryGetValue("MAE", out var mae))
        {
            double gap = meta.Mean - mae.Mean, noise = Math.Max(meta.Std, mae.Std);
            parts.Add(gap > noise && gap > 0 ? string.Create(CultureInfo.InvariantCulture, $"MetaMAE beats MAE (+{gap:F4})")
                : gap < -noise ? string.Create(CultureInfo.InvariantCulture, $"MAE beats MetaMAE ({gap:F4})")
                : string.Create(CultureInfo.InvariantCulture, $"MetaMAE and MAE within noise ({gap:+0.0000;-0.0000})"));
        }
        if (scores.TryGetValue(RawInput, out var raw))
        {
            var encoders = scores.Where(kv => kv.Key is not RawInput and not RandomInit).ToList();
            if (encoders.Count > 0 && encoders.All(kv => kv.Value.Mean <= raw.Mean)) parts.Add("no pretrained encoder beats the raw input");
        }
        if (scores.TryGetValue(RandomInit, out var random))
        {
            var trained = scores.Where(kv => kv.Key is not RawInput and not RandomInit).ToList();
            if (trained.Count > 0 && trained.All(kv => kv.Value.Mean <= random.Mean)) parts.Add("pretraining does not beat the random encoder");
        }
        return string.Join("; ", parts);
    }

    /// <summary>Writes every output file and returns the Markdown table.</summary>
    public static string Write(BenchmarkSuite suite, string outDirectory)
    {
        var results = BenchmarkRunner.ReadResults(outDirectory);
        var completed = Completed(results);
        var rows = Rows(suite, completed);
        var columns = new List<string> { RawInput, RandomInit };
        columns.AddRange(suite.Variants.Select(v => v.Label));

        var csv = new StringBuilder("entry,pretrained_on,probe,metric,encoder,seed,value,run_dir\n");
        foreach (var r in completed)
            foreach (var p in r.Probes.GroupBy(p => p.Dataset))
            {
                var last = p.Where(x => x.Step > 0).MaxBy(x => x.Step);
                var plan = suite.Runs.FirstOrDefault(x => x.Entry == r.Entry)?.Config.Dataset.Name ?? "";
                void Line(string encoder, double value) => csv.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"{r.Entry},{plan},{p.Key},{p.First().Metric},{encoder},{r.Seed},{value:R},{r.RunDirectory}"));
                if (last is not null) Line(r.Label, last.Value);
                if (r.Variant == "metamae" && p.FirstOrDefault(x => x.Step == 0) is { } zero) Line(RandomInit, zero.Value);
                if (r.Variant == "metamae" && p.FirstOrDefault(x => x.RawInput is not null) is { RawInput: { } raw }) Line(RawInput, raw);
            }
        File.WriteAllText(Path.Combine(outDirectory, "results.csv"), csv.ToString());

        File.WriteAllText(Path.Combine(outDirectory, "summary.json"), JsonSerializer.Serialize(new
        {
            suite = suite.Name, seeds = suite.Seeds, runs_planned = suite.Runs.Count,
            runs_completed = completed.Count,
            rows = rows.Select(r => new { r.Entry, r.Modality, r.PretrainedOn, r.Probe, r.Metric, scores = r.Scores, r.Verdict }),
        }, new JsonSerializerOptions(BenchmarkRunner.Json) { WriteIndented = true }));

        var md = new StringBuilder();
        md.AppendLine(Output.MarkdownRow(new[] { "entry", "pretrained on → probed on", "metric" }.Concat(columns).Append("verdict")));
        md.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", columns.Count + 4)));
        foreach (var r in rows)
            md.AppendLine(Output.MarkdownRow(new[] { $"{r.Entry} ({r.Modality})", $"{r.PretrainedOn} → {r.Probe}", r.Metric }
                .Concat(columns.Select(c => r.Scores.TryGetValue(c, out var s) ? Best(r, c, s) : "-")).Append(r.Verdict)));
        var table = md.ToString();
        var losses = Losses(suite, completed);
        var seconds = Latest(results).Sum(r => r.Seconds);
        var document = new StringBuilder()
            .AppendLine($"# Benchmark {suite.Name}").AppendLine()
            .AppendLine(suite.Description).AppendLine()
            .AppendLine($"Mean ± standard deviation over seeds {string.Join(", ", suite.Seeds)}; the best encoder of each row in bold. " +
                        "MAE and MetaMAE start from the same weights at a seed; \"random init\" is that encoder before pretraining; " +
                        "\"raw input\" is the same probe on the input itself. Probe: standardised features, L-BFGS to convergence, " +
                        "weight decay chosen on a validation part of the train split; the test split is never used for any choice.")
            .AppendLine()
            .Append(table).AppendLine()
            .AppendLine("Pretraining losses over the last 50 steps (mean over seeds): reconstruction (the objective both methods share: " +
                        "MSE on masked patches, cross-entropy in nats on masked tokens) and, for MetaMAE, the contrastive term.")
            .AppendLine()
            .Append(losses).AppendLine()
            .AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{results.Select(r => (r.Entry, r.Variant, r.Seed)).Distinct().Count()} of {suite.Runs.Count} runs recorded; run time {TimeSpan.FromSeconds(seconds):hh\\:mm\\:ss} summed over runs " +
                $"on {Environment.ProcessorCount} cores ({Environment.MachineName}). Per-run files: runs/ENTRY-VARIANT-sSEED/report.md."));
        File.WriteAllText(Path.Combine(outDirectory, "results.md"), document.ToString());
        Chart(rows, columns, Path.Combine(outDirectory, "results.png"));
        return table;
    }

    /// <summary>Per entry and variant: the reconstruction (and contrastive) loss of the last 50 steps, read from each run's metrics.jsonl.</summary>
    private static string Losses(BenchmarkSuite suite, IReadOnlyList<BenchmarkRunResult> latest)
    {
        // Each run's metrics.jsonl is read once.
        var tails = latest.ToDictionary(r => r, Tail);
        var md = new StringBuilder();
        md.AppendLine(Output.MarkdownRow(new[] { "entry" }.Concat(suite.Variants.Select(v => $"{v.Label} recon")).Append("MetaMAE contrastive")));
        md.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", suite.Variants.Count + 2)));
        foreach (var (entry, _) in suite.Entries)
        {
            string Cell(IEnumerable<double?> values)
            {
                var v = values.Where(x => x is not null).Select(x => x!.Value).ToList();
                return v.Count == 0 ? "-" : string.Create(CultureInfo.InvariantCulture, $"{v.Average():F4}");
            }
            var cells = suite.Variants.Select(v => Cell(latest.Where(r => r.Entry == entry && r.Variant == v.Variant).Select(r => tails[r].Recon))).ToList();
            cells.Add(Cell(latest.Where(r => r.Entry == entry && r.Variant == "metamae").Select(r => tails[r].Contrastive)));
            md.AppendLine(Output.MarkdownRow(new[] { entry }.Concat(cells)));
        }
        return md.ToString();
    }

    /// <summary>Mean reconstruction and contrastive loss over a run's last 50 steps.</summary>
    private static (double? Recon, double? Contrastive) Tail(BenchmarkRunResult r)
    {
        var steps = Actors.Reporting.RunArtifacts.ReadSteps(Path.Combine(r.RunDirectory, "metrics.jsonl")).Values.TakeLast(50).ToList();
        double? Mean(string key)
        {
            var values = steps.Where(e => e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number).Select(e => e.GetProperty(key).GetDouble()).ToList();
            return values.Count > 0 ? values.Average() : null;
        }
        return (Mean("recon"), Mean("contrastive"));
    }

    private static string Best(BenchmarkRow row, string column, Summary s)
    {
        var best = row.Scores.Where(kv => kv.Key != RawInput).MaxBy(kv => kv.Value.Mean).Key;
        return column == best ? $"**{s}**" : s.ToString();
    }

    /// <summary>Grouped bars, one group per probe row, one bar per encoder (mean, with the seeds' std as error bars).</summary>
    private static void Chart(IReadOnlyList<BenchmarkRow> rows, IReadOnlyList<string> columns, string path)
    {
        if (rows.Count == 0) return;
        var plot = Actors.Reporting.RunArtifacts.NewPlot();
        var palette = new ScottPlot.Palettes.Category10();
        var ticks = new List<ScottPlot.Tick>();
        for (int c = 0; c < columns.Count; c++)
        {
            var bars = new List<ScottPlot.Bar>();
            for (int r = 0; r < rows.Count; r++)
                if (rows[r].Scores.TryGetValue(columns[c], out var s))
                    bars.Add(new ScottPlot.Bar
                    {
                        Position = r * (columns.Count + 1) + c, Value = s.Mean, Error = s.Std, FillColor = palette.GetColor(c),
                    });
            var plotted = plot.Add.Bars(bars);
            plotted.LegendText = columns[c];
            plotted.Color = palette.GetColor(c);
        }
        for (int r = 0; r < rows.Count; r++) ticks.Add(new ScottPlot.Tick(r * (columns.Count + 1) + (columns.Count - 1) / 2.0, $"{rows[r].Probe}\n({rows[r].Metric})"));
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.YLabel("linear probe (test split)");
        plot.ShowLegend(ScottPlot.Edge.Right); // beside the plot: no bar is hidden behind it
        plot.SavePng(path, Math.Max(1000, rows.Count * 160 + 200), 500);
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using MetaMae.Protocol;
using TorchSharp.Modules;

namespace MetaMae.Actors.Reporting;

/// <summary>
/// The files a run directory holds besides checkpoints: metrics.jsonl (one JSON object per step and per evaluation,
/// appended and flushed), TensorBoard event files (TorchSharp's SummaryWriter), PNG plots (ScottPlot) and report.md.
/// </summary>
public sealed class RunArtifacts : IDisposable
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private readonly StreamWriter metrics;
    private readonly SummaryWriter tensorboard;
    private readonly Lock gate = new();

    public string Directory { get; }
    public string MetricsPath => Path.Combine(Directory, "metrics.jsonl");

    public RunArtifacts(string runDirectory)
    {
        Directory = runDirectory;
        System.IO.Directory.CreateDirectory(runDirectory);
        metrics = new StreamWriter(new FileStream(MetricsPath, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
        tensorboard = TorchSharp.torch.utils.tensorboard.SummaryWriter(Path.Combine(runDirectory, "tensorboard"));
    }

    public void Step(StepReport r)
    {
        lock (gate)
        {
            FailPoints.Hit("artifacts.write", r.Step);
            metrics.WriteLine(JsonSerializer.Serialize(new
            {
                kind = "step", r.Step, r.Total, r.Recon, recon_image = r.ReconImage, recon_text = r.ReconText, r.Contrastive, r.Support, grad_norm = r.GradNorm, lr = r.LearningRate,
                step_seconds = r.StepSeconds, wait_seconds = r.WaitSeconds, comm_seconds = r.CommunicationSeconds, comm_total_seconds = r.TotalCommunicationSeconds, batch = r.BatchSize, epoch = r.DataPosition.Epoch, offset = r.DataPosition.Offset,
            }, Json));
            int step = (int)r.Step;
            tensorboard.add_scalar("loss/total", (float)r.Total, step);
            tensorboard.add_scalar("loss/recon", (float)r.Recon, step);
            if (r.Contrastive is { } c) tensorboard.add_scalar("loss/contrastive", (float)c, step);
            if (r.Support is { } s) tensorboard.add_scalar("loss/support", (float)s, step);
            if (r.ReconImage is { } ri) tensorboard.add_scalar("loss/recon_image", (float)ri, step);
            if (r.ReconText is { } rt) tensorboard.add_scalar("loss/recon_text", (float)rt, step);
            tensorboard.add_scalar("train/grad_norm", (float)r.GradNorm, step);
            tensorboard.add_scalar("train/data_wait_seconds", (float)r.WaitSeconds, step);
        }
    }

    /// <summary>The data pipeline's counters: throughput, bad records and how many decoded samples wait in its queues.</summary>
    /// <summary>One data node's counters (<paramref name="node"/>), or their sum over the nodes (null; also to TensorBoard).</summary>
    public void Data(long step, double samplesPerSecond, double bytesPerSecond, long badRecords, long recordsRead, long queuedSamples, string? node = null)
    {
        lock (gate)
        {
            metrics.WriteLine(JsonSerializer.Serialize(new
            {
                kind = "data", step, node = node ?? "all", samples_per_second = samplesPerSecond, bytes_per_second = bytesPerSecond,
                bad_records = badRecords, records_read = recordsRead, queued_samples = queuedSamples,
            }, Json));
            if (node is not null) return;
            tensorboard.add_scalar("data/samples_per_second", (float)samplesPerSecond, (int)step);
            tensorboard.add_scalar("data/queued_samples", queuedSamples, (int)step);
            tensorboard.add_scalar("data/bad_records", badRecords, (int)step);
        }
    }

    /// <summary>Who trains from which step: the group's size and global batch, and why it (re)formed.</summary>
    public void Group(GroupFormedAt g)
    {
        lock (gate)
        {
            metrics.WriteLine(JsonSerializer.Serialize(new
            {
                kind = "group", g.Step, g.Group, g.Replicas, global_batch = g.GlobalBatch, g.Reason, g.Transport,
            }, Json));
            tensorboard.add_scalar("train/replicas", g.Replicas, (int)g.Step);
        }
    }

    /// <summary>The group's replicas were bit-identical at a checkpoint step (their common parameter digest).</summary>
    public void Replicas(ReplicasAgreeAt a)
    {
        lock (gate)
            metrics.WriteLine(JsonSerializer.Serialize(new { kind = "replicas", a.Step, a.Group, a.Replicas, a.Digest }, Json));
    }

    public void Evaluation(EvaluationResult r)
    {
        lock (gate)
        {
            metrics.WriteLine(JsonSerializer.Serialize(new
            {
                kind = "evaluation", r.Step, r.Dataset, r.Metric, r.Value, train_seconds = r.TrainSeconds, r.TrainSamples, r.TestSamples, r.Checkpoint,
                raw_input = r.RawInput, r.RawFeatures, r.Method,
            }, Json));
            tensorboard.add_scalar($"probe/{r.Dataset}/{r.Metric}", (float)r.Value, (int)r.Step);
        }
    }

    /// <summary>Step records of metrics.jsonl, the last record of each step winning (a resumed run repeats some).</summary>
    public static SortedDictionary<long, JsonElement> ReadSteps(string metricsPath)
    {
        var steps = new SortedDictionary<long, JsonElement>();
        if (!File.Exists(metricsPath)) return steps;
        // Only the bytes the file says it has: a device in its place (a disk-full stand-in) reads zeros forever.
        using var stream = new FileStream(metricsPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var bytes = new byte[new FileInfo(metricsPath).Length];
        bytes = bytes[..stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false)];
        using var reader = new StreamReader(new MemoryStream(bytes));
        for (var line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            if (line.Length == 0) continue;
            JsonElement e;
            try
            {
                e = JsonDocument.Parse(line).RootElement;
            }
            catch (JsonException)
            {
                continue; // a line cut short by a kill
            }
            if (e.GetProperty("kind").GetString() == "step") steps[e.GetProperty("step").GetInt64()] = e;
        }
        return steps;
    }

    private static readonly string[] FontFiles =
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf", "/System/Library/Fonts/Supplemental/Arial.ttf",
    ];

    private static readonly string? PlotFont = RegisterFont();

    /// <summary>
    /// The Skia build used here has no fontconfig, so text needs a font file registered by path; a machine without
    /// any of these gets plots without labels rather than no plots.
    /// </summary>
    private static string? RegisterFont()
    {
        var file = FontFiles.FirstOrDefault(File.Exists);
        if (file is null) return null;
        ScottPlot.Fonts.AddFontFile("MetaMaePlot", file);
        return "MetaMaePlot";
    }

    /// <summary>A plot whose text can render (the registered font); every chart of the project starts here.</summary>
    public static ScottPlot.Plot NewPlot()
    {
        var plot = new ScottPlot.Plot();
        if (PlotFont is not null) plot.Font.Set(PlotFont);
        return plot;
    }

    /// <summary>loss.png (total, reconstruction, contrastive per step) and probe.png (metric per checkpoint and data set).</summary>
    public void Plots(IReadOnlyList<EvaluationResult> results)
    {
        var steps = ReadSteps(MetricsPath);
        if (steps.Count > 0)
        {
            var plot = NewPlot();
            double[] xs = steps.Keys.Select(k => (double)k).ToArray();
            void Line(string name)
            {
                var ys = steps.Values.Select(e => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : double.NaN).ToArray();
                if (ys.All(double.IsNaN)) return;
                var s = plot.Add.ScatterLine(xs, ys);
                s.LegendText = name;
            }
            Line("total");
            Line("recon");
            Line("contrastive");
            plot.XLabel("step");
            plot.YLabel("loss");
            plot.ShowLegend();
            plot.SavePng(Path.Combine(Directory, "loss.png"), 900, 500);
        }
        if (results.Count > 0)
        {
            var plot = NewPlot();
            foreach (var group in results.GroupBy(r => r.Dataset))
            {
                var ordered = group.OrderBy(r => r.Step).ToList();
                var s = plot.Add.ScatterLine(ordered.Select(r => (double)r.Step).ToArray(), ordered.Select(r => r.Value).ToArray());
                s.LegendText = $"{group.Key} ({ordered[0].Metric})";
                s.MarkerSize = 6;
            }
            plot.XLabel("checkpoint step");
            plot.YLabel("linear probe");
            plot.ShowLegend();
            plot.SavePng(Path.Combine(Directory, "probe.png"), 900, 500);
        }
    }

    /// <summary>report.md: settings, the probe table (random initialisation at step 0 vs the final step), files.</summary>
    public string Report(string runId, RunStatus status, long step, string configJson, IReadOnlyList<EvaluationResult> results, string? error,
        IReadOnlyList<EvaluationFailed>? failedProbes = null)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# Run {runId}").AppendLine();
        sb.AppendLine($"Status: **{status.Text()}** at step {step}.").AppendLine();
        if (error is not null) sb.AppendLine($"Error: {error}").AppendLine();
        sb.AppendLine("## Linear probe").AppendLine();
        if (results.Count == 0) sb.AppendLine("No evaluation results.");
        else
        {
            // Per data set: the raw input first (the anchor an encoder must beat), then every checkpoint.
            sb.AppendLine("| data set | metric | step | encoder | value |").AppendLine("|---|---|---|---|---|");
            foreach (var set in results.GroupBy(r => r.Dataset).OrderBy(g => g.Key))
            {
                if (set.FirstOrDefault(r => r.RawInput is not null) is { } anchor)
                    sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {anchor.Dataset} | {anchor.Metric} | - | raw input ({anchor.RawFeatures}) | {anchor.RawInput:F4} |"));
                foreach (var r in set.OrderBy(r => r.Step))
                    sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {r.Dataset} | {r.Metric} | {r.Step} | {(r.Step == 0 ? "random init" : "pretrained")} | {r.Value:F4} |"));
            }
            var methods = results.Where(r => r.Method.Length > 0).GroupBy(r => r.Dataset).OrderBy(g => g.Key)
                .Select(g => (g.Key, g.MaxBy(r => r.Step)!.Method)).ToList();
            if (methods.Count > 0)
            {
                sb.AppendLine().AppendLine("How the probe was fitted (the last checkpoint's; the weight decay is chosen per encoder):").AppendLine();
                foreach (var (set, method) in methods) sb.AppendLine($"- {set}: {method}");
            }
        }
        if (failedProbes is { Count: > 0 })
        {
            sb.AppendLine().AppendLine("Probes that failed (`metamae resume` redoes them):").AppendLine();
            foreach (var f in failedProbes.OrderBy(f => f.Step)) sb.AppendLine($"- step {f.Step}, {f.Dataset}: {f.Reason}");
        }
        sb.AppendLine().AppendLine("## Files").AppendLine();
        sb.AppendLine("- `checkpoints/step-NNNNNNNN/`: weights (model.safetensors), optimizer, RNG, meta.json, manifest.json");
        sb.AppendLine("- `metrics.jsonl`, `tensorboard/`, `loss.png`, `probe.png`, `config.json`").AppendLine();
        sb.AppendLine("## Configuration").AppendLine().AppendLine("```json").AppendLine(configJson).AppendLine("```");
        var text = sb.ToString();
        File.WriteAllText(Path.Combine(Directory, "report.md"), text);
        return text;
    }

    public void Dispose()
    {
        metrics.Dispose();
    }
}

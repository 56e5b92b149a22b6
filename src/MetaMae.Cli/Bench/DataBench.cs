using System.Diagnostics;
using System.Globalization;
using System.Text;
using Akka.Actor;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Data;
using MetaMae.Data.Formats;
using MetaMae.Data.Pipeline;
using MetaMae.Data.Readers;
using MetaMae.Data.Transforms;
using MetaMae.Model;
using MetaMae.Protocol;
using SkiaSharp;

namespace MetaMae.Cli.Bench;

/// <summary>Tokenizing throughput of one data kind next to what a CPU learner consumes of it.</summary>
public sealed record DataBenchRow(string Kind, string Dataset, double PerCoreSamplesPerSec, double PipelineSamplesPerSec, int Cores,
    double LearnerSamplesPerSec, string Preset)
{
    public double Ratio => LearnerSamplesPerSec > 0 ? PerCoreSamplesPerSec / LearnerSamplesPerSec : double.NaN;
}

/// <summary>
/// Writes small data sets in their real formats to a temporary folder, times decoding one record at a time on one core
/// and through the parallel pipeline on all cores, and times the learner on the same shape, so the two rates can be
/// compared: one node feeds itself when tokenizing per core is several times the learner's rate.
/// </summary>
public static class DataBench
{
    public static readonly string[] Kinds = ["image", "speech", "sensor", "tabular", "protein"];

    public static List<DataBenchRow> Run(IEnumerable<string> kinds, string preset, int records, int learnerSteps, int threads, Action<string> progress)
    {
        var root = Directory.CreateTempSubdirectory("metamae-databench-").FullName;
        try
        {
            var rows = new List<DataBenchRow>();
            foreach (var kind in kinds)
            {
                var (dataset, input, batch) = Prepare(kind, root, records);
                var perCore = PerCore(dataset);
                var pipeline = Pipeline(dataset);
                var learner = LearnerRate(input, dataset.Spec.DefaultMaskRatio, batch, preset, learnerSteps, threads);
                var row = new DataBenchRow(kind, dataset.Spec.Name, perCore, pipeline, Environment.ProcessorCount, learner, preset);
                progress($"  {kind,-8} {dataset.Spec.Name,-14} tokenize {perCore,9:F0}/s per core, {pipeline,9:F0}/s pipeline; learner {learner,7:F1}/s");
                rows.Add(row);
            }
            return rows;
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    internal static (IDataset Dataset, InputSpec Input, int Batch) Prepare(string kind, string root, int n)
    {
        var rng = new Random(1);
        switch (kind)
        {
            case "image":
            {
                // JPEG photos of a typical size (500x375), resized to 32x32 as the DABS image sets are.
                for (int i = 0; i < n; i++)
                {
                    using var bmp = new SKBitmap(500, 375);
                    using (var canvas = new SKCanvas(bmp))
                    {
                        canvas.Clear(new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256)));
                        using var paint = new SKPaint { Color = new SKColor((byte)rng.Next(256), 80, 160) };
                        canvas.DrawCircle(rng.Next(500), rng.Next(375), 40 + rng.Next(100), paint);
                    }
                    using var data = bmp.Encode(SKEncodedImageFormat.Jpeg, 90);
                    var path = Path.Combine(root, "img", "train", $"c{i % 2}", $"{i:D5}.jpg");
                    Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                    File.WriteAllBytes(path, data.ToArray());
                }
                Directory.CreateDirectory(Path.Combine(root, "img", "val", "c0"));
                var ds = DatasetCatalog.Open("imagenet32", new ReaderOptions(Path.Combine(root, "img"), Split.Pretrain));
                return (ds, InputSpec.Image(3, 32, 32, 4, 4), 64);
            }
            case "speech":
            {
                // 3-second 16 kHz clips (LibriSpeech utterances are longer; the log-mel cost is fixed by the 150,526-sample crop).
                int count = Math.Max(8, n / 8);
                for (int i = 0; i < count; i++)
                {
                    var dir = Path.Combine(root, "LibriSpeech", "train-clean-100", $"{100 + i % 4}", "1");
                    Directory.CreateDirectory(dir);
                    var clip = Enumerable.Range(0, 48000).Select(t => (float)(0.3 * Math.Sin(t * (0.05 + 0.01 * (i % 7))) + 0.01 * rng.NextDouble())).ToArray();
                    AudioFile.WriteWav16(Path.Combine(dir, $"{100 + i % 4}-1-{i:D4}.wav"), clip, 16000);
                }
                return (DatasetCatalog.Open("librispeech", new ReaderOptions(root, Split.Pretrain)), InputSpec.Image(1, 224, 224, 16, 16), 64);
            }
            case "sensor":
            {
                Directory.CreateDirectory(Path.Combine(root, "Protocol"));
                foreach (var s in new[] { 1, 2, 3, 4, 7, 8, 9 })
                {
                    var sb = new StringBuilder();
                    for (int r = 0; r < 2000; r++)
                        sb.AppendLine(string.Join(' ', new[] { (r * 0.01).ToString("F2", CultureInfo.InvariantCulture), r < 1000 ? "1" : "4" }
                            .Concat(Enumerable.Range(0, 52).Select(c => (c + rng.NextDouble()).ToString("F4", CultureInfo.InvariantCulture)))));
                    File.WriteAllText(Path.Combine(root, "Protocol", $"subject10{s}.dat"), sb.ToString());
                }
                var spec = DatasetCatalog.Get("pamap2").Spec;
                return (Pamap2.Read(spec, new ReaderOptions(root, Split.Pretrain), windowsPerEpoch: n), InputSpec.Series(52, 320, 5), 256);
            }
            case "tabular":
            {
                var lines = Enumerable.Range(0, n).Select(i => $"{i % 2}," + string.Join(',', Enumerable.Range(0, 28).Select(_ => rng.NextDouble().ToString("F6", CultureInfo.InvariantCulture))));
                File.WriteAllLines(Path.Combine(root, "HIGGS.csv"), lines);
                return (DatasetCatalog.Open("higgs", new ReaderOptions(root, Split.Pretrain)), InputSpec.Series(1, 28, 1), 256);
            }
            case "protein":
            {
                var lines = new[] { "id,label,sequence" }.Concat(Enumerable.Range(0, n).Select(i =>
                    $"P{i},EC{1 + i % 6},{new string(Enumerable.Range(0, 80 + rng.Next(300)).Select(_ => "ACDEFGHIKLMNPQRSTVWY"[rng.Next(20)]).ToArray())}"));
                File.WriteAllLines(Path.Combine(root, "enzyme_class.csv"), lines);
                return (DatasetCatalog.Open("enzyme", new ReaderOptions(root, Split.Train)), InputSpec.TokenIds(26, 128), 128);
            }
            default:
                throw new ArgumentException($"unknown data kind '{kind}'; known: {string.Join(", ", Kinds)}");
        }
    }

    private static double PerCore(IDataset dataset)
    {
        dataset.Read(0, new DecodeContext(0, 0, 0, true)); // warm up caches and code paths
        var clock = Stopwatch.StartNew();
        int n = 0;
        while (clock.Elapsed.TotalSeconds < 2 && n < dataset.Count)
        {
            dataset.Read(n, new DecodeContext(0, 0, n, true));
            n++;
        }
        return n / clock.Elapsed.TotalSeconds;
    }

    private static double Pipeline(IDataset dataset)
    {
        using var system = ActorSystem.Create("databench", "akka.loglevel = WARNING");
        var settings = new PipelineSettings { BatchSize = 32, Epochs = 1, Parallelism = Environment.ProcessorCount };
        var clock = Stopwatch.StartNew();
        var samples = DataFlows.Batches(dataset, settings, StreamPosition.Start, new DataMetrics())
            .RunWith(Sink.Aggregate<Batch, long>(0, (acc, b) => acc + b.Size), system.Materializer()).Result;
        return samples / clock.Elapsed.TotalSeconds;
    }

    private static double LearnerRate(InputSpec input, double mask, int batch, string preset, int steps, int threads)
    {
        TorchRuntime.SetThreads(threads);
        var config = new ModelConfig(input, Presets.Get(preset), new ObjectiveOptions { MaskRatio = mask });
        using var model = new MaskedAutoencoder(config);
        using var optimizer = Model.Training.Optimizers.AdamW(model);
        var g = new TorchSharp.torch.Generator(1);
        using var x = input.Kind == TokenizerKind.Tokens
            ? TorchSharp.torch.randint(0, input.Vocab, [batch, .. input.SampleShape], generator: g)
            : TorchSharp.torch.randn([batch, .. input.SampleShape], generator: g);
        double seconds = 0;
        for (int i = 0; i <= steps; i++)
        {
            using var draws = MaskingDraws.Sample(batch, input.NumTokens, g);
            var m = Model.Training.TrainStep.Run(model, optimizer, x, draws, i, 1e-4);
            if (i > 0) seconds += m.Seconds;
        }
        return batch * steps / seconds;
    }
}
